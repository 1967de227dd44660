"""Generate the example customer extracts in examples/data/day1 and examples/data/day2.

The two files are the same fictional customer base exported on two consecutive days.
They carry the mess that real CRM exports have: untrimmed and mixed-case emails,
Unicode spaces, a BOM, malformed and already-hashed values, shared addresses and mixed
phone formats. Examples and integration tests use them to exercise identifier
normalization and the day-to-day diff on realistic input.

The output depends only on the seed and on the numpy and pyarrow versions, so running

    python examples/generate_example.py

again rewrites byte-identical files.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import unicodedata
import uuid
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

DAY1 = dt.date(2026, 7, 14)
DAY2 = DAY1 + dt.timedelta(days=1)
FIRST_SIGNUP = dt.date(2015, 1, 1)

# Share of each country in the customer base.
COUNTRIES = {"FR": 0.30, "DE": 0.18, "ES": 0.12, "IT": 0.10, "GB": 0.10, "US": 0.08, "BE": 0.06, "NL": 0.06}

FIRST_NAMES = {
    "FR": ["jean", "marie", "josé", "françois", "chloé", "théo", "léa", "hélène", "jérôme", "anaïs", "louis", "camille"],
    "DE": ["jürgen", "anna", "lukas", "sophie", "björn", "mia", "jörg", "lena", "felix", "hannah", "günter", "emma"],
    "ES": ["josé", "lucía", "martín", "sofía", "andrés", "maría", "raúl", "inés", "pablo", "carmen", "iñigo", "elena"],
    "IT": ["luca", "giulia", "marco", "chiara", "niccolò", "francesca", "matteo", "sara", "andrea", "elisa"],
    "GB": ["oliver", "amelia", "harry", "isla", "george", "ava", "jack", "emily", "noah", "sophie"],
    "US": ["james", "olivia", "liam", "emma", "william", "ava", "michael", "mia", "ethan", "zoë"],
    "BE": ["lucas", "emma", "noah", "louise", "arthur", "olivia", "jules", "elena", "adam", "léonie"],
    "NL": ["daan", "emma", "sem", "julia", "lucas", "mila", "finn", "tess", "bram", "zoë"],
}
LAST_NAMES = {
    "FR": ["martin", "bernard", "dubois", "thomas", "robert", "lefèvre", "garçon", "moreau", "girard", "rené"],
    "DE": ["müller", "schmidt", "schneider", "fischer", "weiß", "meyer", "wagner", "becker", "schäfer", "köhler"],
    "ES": ["garcía", "fernández", "gonzález", "rodríguez", "lópez", "martínez", "sánchez", "pérez", "muñoz", "núñez"],
    "IT": ["rossi", "russo", "ferrari", "esposito", "bianchi", "romano", "colombo", "ricci", "marino", "greco"],
    "GB": ["smith", "jones", "taylor", "brown", "williams", "wilson", "johnson", "davies", "evans", "o'brien"],
    "US": ["smith", "johnson", "williams", "brown", "jones", "miller", "davis", "garcia", "rodriguez", "wilson"],
    "BE": ["peeters", "janssens", "maes", "jacobs", "mertens", "willems", "claes", "goossens", "dubois", "lambert"],
    "NL": ["de jong", "jansen", "de vries", "van dijk", "bakker", "visser", "smit", "meijer", "de boer", "mulder"],
}
DOMAINS = {
    "FR": ["orange.fr", "free.fr", "sfr.fr", "laposte.net", "gmail.com", "hotmail.fr", "yahoo.fr", "wanadoo.fr"],
    "DE": ["web.de", "gmx.de", "t-online.de", "gmail.com", "outlook.de", "posteo.de", "yahoo.de"],
    "ES": ["gmail.com", "hotmail.es", "yahoo.es", "telefonica.net", "outlook.es"],
    "IT": ["gmail.com", "libero.it", "virgilio.it", "alice.it", "hotmail.it", "tiscali.it"],
    "GB": ["gmail.com", "btinternet.com", "yahoo.co.uk", "hotmail.co.uk", "outlook.com", "sky.com"],
    "US": ["gmail.com", "yahoo.com", "outlook.com", "aol.com", "icloud.com", "comcast.net"],
    "BE": ["skynet.be", "telenet.be", "gmail.com", "hotmail.be", "proximus.be"],
    "NL": ["ziggo.nl", "kpnmail.nl", "gmail.com", "hotmail.nl", "xs4all.nl"],
}
# Internationalized domains used by the non-ASCII addresses.
IDN_DOMAINS = {"FR": "exämple.fr", "DE": "bücher.de", "ES": "correo-españa.es", "IT": "città.it"}

CALLING_CODES = {"FR": "33", "DE": "49", "ES": "34", "IT": "39", "GB": "44", "US": "1", "BE": "32", "NL": "31"}

# Characters that surround emails in real exports and that normalization must strip.
SURROUNDING_SPACES = [" ", "  ", "\t", "\u00a0", "\u2009", "\u3000"]
BOM = "\ufeff"


@dataclass(frozen=True)
class Customer:
    customer_id: int
    email: str | None
    phone: str | None
    mobile_ad_id: str | None
    country: str
    lifetime_value: float
    opted_out: bool
    signup_date: dt.date


def pick(rng: np.random.Generator, items):
    return items[int(rng.integers(len(items)))]


def strip_accents(text: str) -> str:
    decomposed = unicodedata.normalize("NFD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def clean_email(rng: np.random.Generator, country: str) -> str:
    """Build a well-formed, lower-case address, usually ASCII-folded as mail providers require."""
    first = pick(rng, FIRST_NAMES[country])
    last = pick(rng, LAST_NAMES[country]).replace(" ", "").replace("'", "")
    number = int(rng.integers(1, 1000))
    pattern = int(rng.integers(6)) if rng.random() > 0.02 else -1
    if pattern == 0:
        local = f"{first}.{last}{number}"
    elif pattern == 1:
        local = f"{first}{last}{number}"
    elif pattern == 2:
        local = f"{first[0]}{last}{number}"
    elif pattern == 3:
        local = f"{first}_{last}{int(rng.integers(1960, 2006))}"
    elif pattern == 4:
        local = f"{first}.{last}{number}+shop"
    elif pattern == 5:
        local = f"{last}.{first}{number}"
    else:
        local = f"{first}.{last}"  # the early customers who got the plain name

    non_ascii = country in IDN_DOMAINS and rng.random() < 0.04
    if non_ascii:
        domain = IDN_DOMAINS[country] if rng.random() < 0.5 else pick(rng, DOMAINS[country])
        return f"{local}@{domain}"
    return f"{strip_accents(local)}@{pick(rng, DOMAINS[country])}"


def malformed_email(rng: np.random.Generator, email: str) -> str:
    local, domain = email.split("@", 1)
    kind = int(rng.integers(6))
    if kind == 0:
        return f"{local}.{domain}"  # no @
    if kind == 1:
        return f"{local}@{local}@{domain}"  # two @
    if kind == 2:
        return f"{local}@{domain.split('.')[0]}"  # no dot in the domain
    if kind == 3:
        return f"{local[:3]} {local[3:]}@{domain}"  # inner space
    if kind == 4:
        return f"@{domain}"  # empty local part
    return pick(rng, ["n/a", "none", "-", "unknown", "0"])


def mess_up_email(rng: np.random.Generator, email: str) -> str | None:
    """Turn a clean address into what a CRM export actually contains."""
    roll = rng.random()
    if roll < 0.030:
        return None
    if roll < 0.040:
        return ""
    if roll < 0.045:
        return pick(rng, SURROUNDING_SPACES)
    if roll < 0.065:
        return malformed_email(rng, email)
    if roll < 0.085:
        # Some upstream systems already export SHA-256 of the normalized address.
        digest = hashlib.sha256(unicodedata.normalize("NFC", email).encode()).hexdigest()
        return digest.upper() if rng.random() < 0.25 else digest

    if unicodedata.normalize("NFD", email) != email and rng.random() < 0.5:
        email = unicodedata.normalize("NFD", email)

    case_roll = rng.random()
    if case_roll < 0.15:
        email = "@".join(part.title() for part in email.split("@"))
    elif case_roll < 0.22:
        email = email.upper()

    space_roll = rng.random()
    if space_roll < 0.05:
        email = f"{pick(rng, SURROUNDING_SPACES)}{email}"
    elif space_roll < 0.10:
        email = f"{email}{pick(rng, SURROUNDING_SPACES)}"
    elif space_roll < 0.11:
        email = f"{BOM}{email}"
    return email


def random_phone(rng: np.random.Generator, country: str) -> str | None:
    roll = rng.random()
    if roll < 0.12:
        return None
    if roll < 0.15:
        return pick(rng, ["12345", "0000000000", "n/a", "+33 6", "call me"])

    code = CALLING_CODES[country]
    if country == "US":
        digits = f"{int(rng.integers(201, 990))}{int(rng.integers(200, 999))}{int(rng.integers(0, 10000)):04d}"
        return pick(rng, [f"({digits[:3]}) {digits[3:6]}-{digits[6:]}", f"+1-{digits[:3]}-{digits[3:6]}-{digits[6:]}", f"+1{digits}"])

    national = f"{int(rng.integers(6, 8))}{int(rng.integers(0, 10**8)):08d}"
    style = int(rng.integers(5))
    if style == 0:
        return " ".join(f"0{national}"[i : i + 2] for i in range(0, 10, 2))
    if style == 1:
        return f"+{code} {national[0]} {national[1:5]} {national[5:]}"
    if style == 2:
        return f"00{code}{national}"
    if style == 3:
        return f"+{code}{national}"
    return ".".join(f"0{national}"[i : i + 2] for i in range(0, 10, 2))


def random_mobile_ad_id(rng: np.random.Generator) -> str | None:
    if rng.random() < 0.45:
        return None
    value = str(uuid.UUID(bytes=rng.bytes(16), version=4))
    return value.upper() if rng.random() < 0.3 else value


def random_lifetime_value(rng: np.random.Generator) -> float:
    """Draw a skewed spend: a tenth never bought, most spent little, a few spent a lot."""
    if rng.random() < 0.10:
        return 0.0
    return round(float(rng.lognormal(mean=3.6, sigma=1.2)), 2)


def random_date(rng: np.random.Generator, first: dt.date, last: dt.date) -> dt.date:
    return first + dt.timedelta(days=int(rng.integers((last - first).days + 1)))


def new_customer(rng: np.random.Generator, customer_id: int, first_signup: dt.date, last_signup: dt.date) -> Customer:
    """Draw one customer. A customer who signed up on the export day has at most a first order."""
    country = str(rng.choice(list(COUNTRIES), p=list(COUNTRIES.values())))
    customer = Customer(
        customer_id=customer_id,
        email=mess_up_email(rng, clean_email(rng, country)),
        phone=random_phone(rng, country),
        mobile_ad_id=random_mobile_ad_id(rng),
        country=country,
        lifetime_value=random_lifetime_value(rng),
        opted_out=bool(rng.random() < 0.08),
        signup_date=random_date(rng, first_signup, last_signup),
    )
    if customer.signup_date >= DAY1:
        first_order = 0.0 if rng.random() < 0.4 else round(float(rng.lognormal(mean=3.6, sigma=0.8)), 2)
        customer = replace(customer, lifetime_value=first_order)
    return customer


def share_emails(rng: np.random.Generator, customers: list[Customer], share: float) -> list[Customer]:
    """Give some customers the address of another one, often with different case or spacing.

    Households and shared family accounts do this, and it is the case where one hashed
    identifier belongs to two members.
    """
    result = list(customers)
    for index in np.flatnonzero(rng.random(len(result)) < share):
        source = result[int(rng.integers(len(result)))].email
        if not source or source == result[index].email:
            continue
        variant = pick(rng, [source, source.upper(), source.lower(), f" {source}", source.title()])
        result[index] = replace(result[index], email=variant)
    return result


def generate_day1(rng: np.random.Generator, count: int) -> list[Customer]:
    customers = [new_customer(rng, 100_001 + i, FIRST_SIGNUP, DAY1) for i in range(count)]
    return share_emails(rng, customers, share=0.01)


def change_spend(rng: np.random.Generator, customer: Customer) -> Customer:
    """Apply one day of purchases and refunds, pushing some customers across the threshold of 100."""
    value = customer.lifetime_value
    roll = rng.random()
    if 60 < value <= 100 and roll < 0.03:
        value = round(100 + float(rng.uniform(0.5, 60)), 2)  # crosses up
    elif 100 < value < 160 and roll < 0.04:
        value = round(float(rng.uniform(40, 99.99)), 2)  # refund, crosses down
    elif roll < 0.015:
        value = round(value + float(rng.uniform(5, 80)), 2)  # ordinary purchase
    return replace(customer, lifetime_value=value)


def change_email(rng: np.random.Generator, customer: Customer) -> Customer:
    roll = rng.random()
    if roll < 0.010:
        return replace(customer, email=mess_up_email(rng, clean_email(rng, customer.country)))
    if roll < 0.015 and customer.email:
        # The CRM re-saves the address with other case or spacing, which normalizes the same.
        return replace(customer, email=f" {customer.email.strip().lower()} ")
    return customer


def change_consent(rng: np.random.Generator, customer: Customer) -> Customer:
    roll = rng.random()
    if not customer.opted_out and roll < 0.006:
        return replace(customer, opted_out=True)
    if customer.opted_out and roll < 0.02:
        return replace(customer, opted_out=False)
    return customer


def change_devices(rng: np.random.Generator, customer: Customer) -> Customer:
    roll = rng.random()
    if roll < 0.003:
        return replace(customer, mobile_ad_id=random_mobile_ad_id(rng))
    if roll < 0.006:
        return replace(customer, phone=random_phone(rng, customer.country))
    return customer


def generate_day2(rng: np.random.Generator, day1: list[Customer]) -> list[Customer]:
    """Derive the next day's export: about 1 % leave, 1.5 % join and a few percent change."""
    remaining = [c for c, gone in zip(day1, rng.random(len(day1)) < 0.01) if not gone]
    changed = []
    for customer in remaining:
        customer = change_spend(rng, customer)
        customer = change_email(rng, customer)
        customer = change_consent(rng, customer)
        customer = change_devices(rng, customer)
        changed.append(customer)

    next_id = day1[-1].customer_id + 1
    joined_count = int(len(day1) * 0.015)
    joined = [new_customer(rng, next_id + i, DAY1, DAY2) for i in range(joined_count)]
    return changed + joined


SCHEMA = pa.schema(
    [
        pa.field("customer_id", pa.int64(), nullable=False),
        pa.field("email", pa.string()),
        pa.field("phone", pa.string()),
        pa.field("mobile_ad_id", pa.string()),
        pa.field("country", pa.string(), nullable=False),
        pa.field("lifetime_value", pa.float64(), nullable=False),
        pa.field("opted_out", pa.bool_(), nullable=False),
        pa.field("signup_date", pa.date32(), nullable=False),
    ]
)


def write_extract(customers: list[Customer], path: Path) -> None:
    columns = {name: [getattr(c, name) for c in customers] for name in SCHEMA.names}
    table = pa.Table.from_pydict(columns, schema=SCHEMA)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, compression="zstd", row_group_size=10_000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=30_000, help="number of customers on day 1")
    parser.add_argument("--seed", type=int, default=20260714, help="seed of the random generator")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "data", help="output folder")
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    day1 = generate_day1(rng, args.customers)
    day2 = generate_day2(rng, day1)
    write_extract(day1, args.out / "day1" / "customers.parquet")
    write_extract(day2, args.out / "day2" / "customers.parquet")
    print(f"wrote {len(day1)} customers to {args.out / 'day1'} and {len(day2)} to {args.out / 'day2'}")


if __name__ == "__main__":
    main()
