"""Send contact-list amendments to the Criteo Marketing Solutions API (or a fake of it).

The DuckDB and Polars jobs share this client, so both pay the same delivery cost. It
sends one request at a time over a keep-alive session, which is how a plain Python job
usually delivers.
"""

from __future__ import annotations

import logging
import random
import time

import requests

API_VERSION = "2026-07"
MAX_ATTEMPTS = 5
FIRST_BACKOFF_SECS = 1.0
REQUEST_TIMEOUT_SECS = 120

log = logging.getLogger(__name__)


class DeliveryError(RuntimeError):
    """A request that failed permanently or ran out of attempts."""


class CriteoClient:
    def __init__(self, api_url: str, client_id: str, client_secret: str) -> None:
        self.api_url = api_url.rstrip("/")
        self._client_id = client_id
        self._client_secret = client_secret
        self._session = requests.Session()
        self._token: str | None = None

    def __repr__(self) -> str:
        return f"CriteoClient(api_url={self.api_url!r}, client_id={self._client_id!r}, client_secret=***)"

    def refresh_token(self) -> None:
        """Request a new access token with the client-credentials grant."""
        response = self._session.post(
            f"{self.api_url}/oauth2/token",
            data={"grant_type": "client_credentials", "client_id": self._client_id, "client_secret": self._client_secret},
            headers={"Accept": "application/json"},
            timeout=REQUEST_TIMEOUT_SECS,
        )
        if response.status_code != 200:
            raise DeliveryError(f"failed to get an access token from {self.api_url}/oauth2/token: HTTP {response.status_code}")
        self._token = response.json()["access_token"]

    def amend_contact_list(self, audience_id: str, body: bytes) -> dict:
        """PATCH one amendment body to the audience and return the response's `attributes`.

        Retries 429 (until `x-ratelimit-reset`), 5xx and connection errors with exponential
        backoff, and refreshes the token once after a 401.
        """
        url = f"{self.api_url}/{API_VERSION}/marketing-solutions/audience-segments/{audience_id}/contact-list"
        if self._token is None:
            self.refresh_token()
        refreshed = False

        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                response = self._session.patch(url, data=body, headers=self._headers(), timeout=REQUEST_TIMEOUT_SECS)
            except requests.ConnectionError as error:
                delay = self._backoff_secs(attempt)
                log.warning("PATCH %s failed on attempt %d (%s), retrying in %.1f s", url, attempt, error, delay)
                time.sleep(delay)
                continue

            if response.status_code == 200:
                return response.json()["data"]["attributes"]
            if response.status_code == 401 and not refreshed:
                self.refresh_token()
                refreshed = True
                continue
            if response.status_code == 429 or response.status_code >= 500:
                delay = self._retry_delay_secs(response, attempt)
                log.warning("PATCH %s returned HTTP %d on attempt %d, retrying in %.1f s", url, response.status_code, attempt, delay)
                time.sleep(delay)
                continue
            raise DeliveryError(f"PATCH {url} was rejected with HTTP {response.status_code}: {response.text[:500]}")

        raise DeliveryError(f"PATCH {url} failed after {MAX_ATTEMPTS} attempts")

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token}", "Content-Type": "application/json", "Accept": "application/json"}

    @staticmethod
    def _backoff_secs(attempt: int) -> float:
        return FIRST_BACKOFF_SECS * 2 ** (attempt - 1) * random.uniform(0.5, 1.5)

    def _retry_delay_secs(self, response: requests.Response, attempt: int) -> float:
        reset = response.headers.get("x-ratelimit-reset")
        if response.status_code == 429 and reset and reset.isdigit():
            return max(0.0, int(reset) - time.time()) + random.uniform(0, 0.5)
        return self._backoff_secs(attempt)
