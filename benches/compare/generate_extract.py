"""Generate a seeded two-day customer extract of any size for the benchmark.

Writes DIR/day1/part-NNNNN.parquet and DIR/day2/part-NNNNN.parquet with the columns and
the kinds of mess of examples/data (see examples/data/README.md), plus DIR/extract.json
describing what was generated. Rows are produced in independent chunks of --chunk-rows,
each vectorized with numpy and pyarrow.compute and written as its own file, so memory
depends on the chunk size and the number of --jobs, never on --rows.

Day 2 is derived from day 1 chunk by chunk: 0.3 % of the customers leave, 0.5 % join,
and some change address, consent or spend. Among the members of the benchmark segment
this gives about 1 % entering and 1 % leaving.

    python benches/compare/generate_extract.py --rows 10000000 --seed 1 --out bench-data/extract-10000000-seed1
"""

from __future__ import annotations

import argparse
import json
import os
import time
import unicodedata
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

EPOCH = np.datetime64("1970-01-01", "D")
FIRST_SIGNUP_DAY = int((np.datetime64("2015-01-01", "D") - EPOCH).astype(int))
DAY1 = int((np.datetime64("2026-07-14", "D") - EPOCH).astype(int))

COUNTRIES = ["FR", "DE", "ES", "IT", "GB", "US", "BE", "NL"]
COUNTRY_SHARES = [0.30, 0.18, 0.12, 0.10, 0.10, 0.08, 0.06, 0.06]
CALLING_CODES = ["33", "49", "34", "39", "44", "1", "32", "31"]

FIRST_NAMES = [
    ["jean", "marie", "josé", "françois", "chloé", "théo", "léa", "hélène", "jérôme", "anaïs", "louis", "camille"],
    ["jürgen", "anna", "lukas", "sophie", "björn", "mia", "jörg", "lena", "felix", "hannah", "günter", "emma"],
    ["josé", "lucía", "martín", "sofía", "andrés", "maría", "raúl", "inés", "pablo", "carmen", "iñigo", "elena"],
    ["luca", "giulia", "marco", "chiara", "niccolò", "francesca", "matteo", "sara", "andrea", "elisa"],
    ["oliver", "amelia", "harry", "isla", "george", "ava", "jack", "emily", "noah", "sophie"],
    ["james", "olivia", "liam", "emma", "william", "ava", "michael", "mia", "ethan", "zoë"],
    ["lucas", "emma", "noah", "louise", "arthur", "olivia", "jules", "elena", "adam", "léonie"],
    ["daan", "emma", "sem", "julia", "lucas", "mila", "finn", "tess", "bram", "zoë"],
]
LAST_NAMES = [
    ["martin", "bernard", "dubois", "thomas", "robert", "lefèvre", "garçon", "moreau", "girard", "rené"],
    ["müller", "schmidt", "schneider", "fischer", "weiß", "meyer", "wagner", "becker", "schäfer", "köhler"],
    ["garcía", "fernández", "gonzález", "rodríguez", "lópez", "martínez", "sánchez", "pérez", "muñoz", "núñez"],
    ["rossi", "russo", "ferrari", "esposito", "bianchi", "romano", "colombo", "ricci", "marino", "greco"],
    ["smith", "jones", "taylor", "brown", "williams", "wilson", "johnson", "davies", "evans", "obrien"],
    ["smith", "johnson", "williams", "brown", "jones", "miller", "davis", "garcia", "rodriguez", "wilson"],
    ["peeters", "janssens", "maes", "jacobs", "mertens", "willems", "claes", "goossens", "dubois", "lambert"],
    ["dejong", "jansen", "devries", "vandijk", "bakker", "visser", "smit", "meijer", "deboer", "mulder"],
]
DOMAINS = [
    ["orange.fr", "free.fr", "sfr.fr", "laposte.net", "gmail.com", "hotmail.fr", "yahoo.fr", "wanadoo.fr"],
    ["web.de", "gmx.de", "t-online.de", "gmail.com", "outlook.de", "posteo.de", "yahoo.de"],
    ["gmail.com", "hotmail.es", "yahoo.es", "telefonica.net", "outlook.es"],
    ["gmail.com", "libero.it", "virgilio.it", "alice.it", "hotmail.it", "tiscali.it"],
    ["gmail.com", "btinternet.com", "yahoo.co.uk", "hotmail.co.uk", "outlook.com", "sky.com"],
    ["gmail.com", "yahoo.com", "outlook.com", "aol.com", "icloud.com", "comcast.net"],
    ["skynet.be", "telenet.be", "gmail.com", "hotmail.be", "proximus.be"],
    ["ziggo.nl", "kpnmail.nl", "gmail.com", "hotmail.nl", "xs4all.nl"],
]
# Internationalized domain of each country, used by half of the non-ASCII addresses.
IDN_DOMAINS = ["exämple.fr", "bücher.de", "correo-españa.es", "città.it", "", "", "", ""]

SURROUNDING_SPACES = [" ", "  ", "\t", "\u00a0", "\u2009", "\u3000"]
BOM = "\ufeff"
NOT_AN_EMAIL = ["n/a", "none", "-", "unknown", "0"]
INVALID_PHONES = ["12345", "0000000000", "n/a", "+33 6", "call me"]
HEX_DIGITS = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)

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


def strip_accents(text: str) -> str:
    decomposed = unicodedata.normalize("NFD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c))


@dataclass(frozen=True)
class Vocabulary:
    """Per-country word lists flattened into Arrow arrays, with each country's offset and size."""

    values: pa.Array
    folded: pa.Array
    offsets: np.ndarray
    sizes: np.ndarray

    @classmethod
    def from_lists(cls, lists: list[list[str]]) -> Vocabulary:
        flat = [word for words in lists for word in words]
        sizes = np.array([len(words) for words in lists])
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        return cls(pa.array(flat), pa.array([strip_accents(w) for w in flat]), offsets, sizes)

    def draw(self, rng: np.random.Generator, countries: np.ndarray) -> np.ndarray:
        """Draw one word index per row from the row's country list."""
        return self.offsets[countries] + (rng.random(len(countries)) * self.sizes[countries]).astype(np.int64)


FIRST = Vocabulary.from_lists(FIRST_NAMES)
LAST = Vocabulary.from_lists(LAST_NAMES)
DOMAIN = Vocabulary.from_lists(DOMAINS)


def concat(*parts) -> pa.Array:
    return pc.binary_join_element_wise(*parts, "")


def pick(values: list[str], indices: np.ndarray) -> pa.Array:
    return pa.array(values).take(pa.array(indices))


def fixed_width_strings(chars: np.ndarray) -> pa.Array:
    """Wrap an (n, width) uint8 array of ASCII characters as an Arrow string array without copying rows one by one."""
    rows, width = chars.shape
    offsets = np.arange(0, (rows + 1) * width, width, dtype=np.int32)
    return pa.StringArray.from_buffers(rows, pa.py_buffer(offsets), pa.py_buffer(np.ascontiguousarray(chars)))


def hex_chars(raw: np.ndarray) -> np.ndarray:
    chars = np.empty((raw.shape[0], raw.shape[1] * 2), dtype=np.uint8)
    chars[:, 0::2] = HEX_DIGITS[raw >> 4]
    chars[:, 1::2] = HEX_DIGITS[raw & 0x0F]
    return chars


def random_sha256_hex(rng: np.random.Generator, count: int) -> pa.Array:
    """Draw 64-hex-digit values that look like SHA-256 digests of addresses the extract does not contain."""
    return fixed_width_strings(hex_chars(rng.integers(0, 256, size=(count, 32), dtype=np.uint8)))


def random_uuids(rng: np.random.Generator, count: int) -> pa.Array:
    raw = rng.integers(0, 256, size=(count, 16), dtype=np.uint8)
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40  # version 4
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80  # RFC 4122 variant
    digits = hex_chars(raw)
    chars = np.full((count, 36), ord("-"), dtype=np.uint8)
    for start, end, target in ((0, 8, 0), (8, 12, 9), (12, 16, 14), (16, 20, 19), (20, 32, 24)):
        chars[:, target : target + end - start] = digits[:, start:end]
    return fixed_width_strings(chars)


def replace_where(array: pa.Array, mask: np.ndarray, make) -> pa.Array:
    """Replace the rows selected by `mask` with `make(selected rows, row indices)`."""
    indices = np.flatnonzero(mask)
    if len(indices) == 0:
        return array
    replacement = make(array.take(pa.array(indices)), indices)
    return pc.replace_with_mask(array, pa.array(mask), replacement.cast(array.type))


def clean_emails(rng: np.random.Generator, ids: np.ndarray, countries: np.ndarray, renamed: bool = False) -> pa.Array:
    """Build well-formed lower-case addresses that are unique per customer id.

    The customer id is the digit suffix of the local part, and names contain no digits, so
    two customers never get the same address by chance. `renamed` builds a second address
    for the same customer (a dot before the digits), which differs from every first one.
    """
    count = len(ids)
    non_ascii = (rng.random(count) < 0.04) & (countries <= 3)
    first_names = pc.if_else(non_ascii, FIRST.values.take(FIRST.draw(rng, countries)), FIRST.folded.take(FIRST.draw(rng, countries)))
    last_names = pc.if_else(non_ascii, LAST.values.take(LAST.draw(rng, countries)), LAST.folded.take(LAST.draw(rng, countries)))
    separators = pick(["", ".", "_"], rng.integers(0, 3, count))
    digits = pc.cast(pa.array(ids), pa.string())
    if renamed:
        digits = concat(pa.scalar("."), digits)
    tags = pick(["", "+shop"], (rng.random(count) < 1 / 6).astype(np.int64))

    domain_index = DOMAIN.draw(rng, countries)
    domains = DOMAIN.values.take(pa.array(domain_index))
    use_idn = non_ascii & (rng.random(count) < 0.5)
    domains = pc.if_else(use_idn, pa.array(IDN_DOMAINS).take(pa.array(countries)), domains)
    return concat(first_names, separators, last_names, digits, tags, pa.scalar("@"), domains)


def malformed_emails(rng: np.random.Generator, clean: pa.Array) -> pa.Array:
    """Break each address in one of six ways a CRM export does."""
    count = len(clean)
    parts = pc.split_pattern(clean, "@", max_splits=1)
    local = pc.list_element(parts, 0)
    domain = pc.list_element(parts, 1)
    first_label = pc.list_element(pc.split_pattern(domain, ".", max_splits=1), 0)
    at = pa.scalar("@")
    variants = [
        concat(local, pa.scalar("."), domain),  # no @
        concat(local, at, local, at, domain),  # two @
        concat(local, at, first_label),  # no dot in the domain
        concat(pc.utf8_slice_codeunits(local, 0, 3), pa.scalar(" "), pc.utf8_slice_codeunits(local, 3), at, domain),
        concat(at, domain),  # empty local part
        pick(NOT_AN_EMAIL, rng.integers(0, len(NOT_AN_EMAIL), count)),
    ]
    return pc.choose(pa.array(rng.integers(0, len(variants), count).astype(np.int8)), *variants)


def disguise(rng: np.random.Generator, emails: pa.Array) -> pa.Array:
    """Apply the case, Unicode form and surrounding-space noise that normalization must undo."""
    count = len(emails)
    non_ascii = ~np.asarray(pc.fill_null(pc.string_is_ascii(emails), True))
    emails = replace_where(emails, non_ascii & (rng.random(count) < 0.5), lambda v, _: pc.utf8_normalize(v, "NFD"))

    case_roll = rng.random(count)
    emails = replace_where(emails, case_roll < 0.15, lambda v, _: pc.utf8_title(v))
    emails = replace_where(emails, (case_roll >= 0.15) & (case_roll < 0.22), lambda v, _: pc.utf8_upper(v))

    space_roll = rng.random(count)
    space_choice = rng.integers(1, len(SURROUNDING_SPACES) + 1, count)
    no_space = np.zeros(count, dtype=np.int64)
    prefix_index = np.where(space_roll < 0.05, space_choice, np.where((space_roll >= 0.10) & (space_roll < 0.11), len(SURROUNDING_SPACES) + 1, no_space))
    suffix_index = np.where((space_roll >= 0.05) & (space_roll < 0.10), space_choice, no_space)
    spaces = ["", *SURROUNDING_SPACES, BOM]
    return concat(pick(spaces, prefix_index), emails, pick(spaces, suffix_index))


def messy_emails(rng: np.random.Generator, ids: np.ndarray, countries: np.ndarray, renamed: bool = False) -> pa.Array:
    """Build the `email` column: null, empty, blank, malformed, already hashed or a disguised address."""
    count = len(ids)
    clean = clean_emails(rng, ids, countries, renamed)
    emails = disguise(rng, clean)

    roll = rng.random(count)
    emails = replace_where(emails, (roll >= 0.045) & (roll < 0.065), lambda _, rows: malformed_emails(rng, clean.take(pa.array(rows))))
    emails = replace_where(emails, (roll >= 0.065) & (roll < 0.085), lambda _, rows: hashed_emails(rng, len(rows)))
    emails = replace_where(emails, (roll >= 0.030) & (roll < 0.045), lambda _, rows: blank_emails(rng, len(rows)))
    return pc.if_else(pa.array(roll < 0.030), pa.scalar(None, pa.string()), emails)


def hashed_emails(rng: np.random.Generator, count: int) -> pa.Array:
    digests = random_sha256_hex(rng, count)
    return pc.if_else(pa.array(rng.random(count) < 0.25), pc.utf8_upper(digests), digests)


def blank_emails(rng: np.random.Generator, count: int) -> pa.Array:
    """Draw empty strings (two thirds) and whitespace-only values (one third)."""
    blanks = ["", "", "", "", *SURROUNDING_SPACES[:2]]
    return pick(blanks, rng.integers(0, len(blanks), count))


def share_emails(rng: np.random.Generator, emails: pa.Array, share: float) -> pa.Array:
    """Give some customers the address of another customer of the chunk, often with other case or spacing."""
    count = len(emails)
    mask = rng.random(count) < share

    def copy_from_others(_, rows: np.ndarray) -> pa.Array:
        sources = emails.take(pa.array(rng.integers(0, count, len(rows))))
        variant = pa.array(rng.integers(0, 3, len(rows)).astype(np.int8))
        return pc.choose(variant, sources, pc.utf8_upper(sources), concat(pa.scalar(" "), sources))

    return replace_where(emails, mask, copy_from_others)


def random_phones(rng: np.random.Generator, countries: np.ndarray) -> pa.Array:
    count = len(countries)
    national = pc.cast(pa.array(rng.integers(6, 8, count) * 10**8 + rng.integers(0, 10**8, count)), pa.string())
    code = pa.array(CALLING_CODES).take(pa.array(countries))

    def piece(start: int, stop: int) -> pa.Array:
        return pc.utf8_slice_codeunits(national, start, stop)

    plus, zero, space, dot = (pa.scalar(s) for s in ("+", "0", " ", "."))
    styles = [
        concat(zero, national),
        concat(plus, code, national),
        concat(pa.scalar("00"), code, national),
        concat(plus, code, space, piece(0, 1), space, piece(1, 5), space, piece(5, 9)),
        concat(zero, piece(0, 1), dot, piece(1, 3), dot, piece(3, 5), dot, piece(5, 7), dot, piece(7, 9)),
        pick(INVALID_PHONES, rng.integers(0, len(INVALID_PHONES), count)),
    ]
    roll = rng.random(count)
    style = np.where(roll < 0.03, len(styles) - 1, rng.integers(0, len(styles) - 1, count))
    phones = pc.choose(pa.array(style.astype(np.int8)), *styles)
    return pc.if_else(pa.array(roll > 0.88), pa.scalar(None, pa.string()), phones)


def random_mobile_ad_ids(rng: np.random.Generator, count: int) -> pa.Array:
    ids = random_uuids(rng, count)
    ids = pc.if_else(pa.array(rng.random(count) < 0.3), pc.utf8_upper(ids), ids)
    return pc.if_else(pa.array(rng.random(count) < 0.45), pa.scalar(None, pa.string()), ids)


def random_lifetime_values(rng: np.random.Generator, count: int) -> np.ndarray:
    """Draw a skewed spend: a tenth never bought, most spent little, a few spent a lot."""
    spend = np.round(rng.lognormal(mean=3.6, sigma=1.2, size=count), 2)
    return np.where(rng.random(count) < 0.10, 0.0, spend)


def first_orders(rng: np.random.Generator, count: int) -> np.ndarray:
    spend = np.round(rng.lognormal(mean=3.6, sigma=0.8, size=count), 2)
    return np.where(rng.random(count) < 0.4, 0.0, spend)


def new_customers(rng: np.random.Generator, ids: np.ndarray, first_day: int, last_day: int, spend: np.ndarray | None = None) -> pa.Table:
    count = len(ids)
    countries = rng.choice(len(COUNTRIES), size=count, p=COUNTRY_SHARES)
    emails = share_emails(rng, messy_emails(rng, ids, countries), share=0.01)
    signup_days = rng.integers(first_day, last_day + 1, count).astype(np.int32)
    columns = {
        "customer_id": pa.array(ids, pa.int64()),
        "email": emails,
        "phone": random_phones(rng, countries),
        "mobile_ad_id": random_mobile_ad_ids(rng, count),
        "country": pa.array(COUNTRIES).take(pa.array(countries)),
        "lifetime_value": pa.array(random_lifetime_values(rng, count) if spend is None else spend),
        "opted_out": pa.array(rng.random(count) < 0.08),
        "signup_date": pa.array(signup_days).cast(pa.date32()),
    }
    return pa.table(columns, schema=SCHEMA)


def next_day(rng: np.random.Generator, day1: pa.Table, new_ids: np.ndarray) -> pa.Table:
    """Derive the next day's rows of one chunk from its day-1 rows."""
    remaining = day1.filter(pa.array(rng.random(day1.num_rows) >= 0.003))
    count = remaining.num_rows
    ids = remaining.column("customer_id").to_numpy()
    countries = pc.index_in(remaining.column("country"), value_set=pa.array(COUNTRIES)).to_numpy()

    email = remaining.column("email").combine_chunks()
    roll = rng.random(count)
    email = replace_where(email, roll < 0.0025, lambda _, rows: messy_emails(rng, ids[rows], countries[rows], renamed=True))
    resaved = (roll >= 0.0025) & (roll < 0.0075) & ~np.asarray(pc.is_null(email))
    email = replace_where(email, resaved, lambda values, _: concat(pa.scalar(" "), values, pa.scalar(" ")))

    opted_out = remaining.column("opted_out").to_numpy(zero_copy_only=False).copy()
    consent_roll = rng.random(count)
    opted_out = np.where(~opted_out & (consent_roll < 0.002), True, np.where(opted_out & (consent_roll < 0.02), False, opted_out))

    spend = remaining.column("lifetime_value").to_numpy().copy()
    spend_roll = rng.random(count)
    crosses_up = (spend > 60) & (spend <= 100) & (spend_roll < 0.003)
    crosses_down = (spend > 100) & (spend < 160) & (spend_roll < 0.005)
    purchase = ~crosses_up & ~crosses_down & (spend_roll > 0.996)
    spend = np.where(crosses_up, np.round(100 + rng.uniform(0.5, 60, count), 2), spend)
    spend = np.where(crosses_down, np.round(rng.uniform(40, 99.99, count), 2), spend)
    spend = np.where(purchase, np.round(spend + rng.uniform(5, 80, count), 2), spend)

    changed = remaining.set_column(1, SCHEMA.field("email"), email)
    changed = changed.set_column(5, SCHEMA.field("lifetime_value"), pa.array(spend))
    changed = changed.set_column(6, SCHEMA.field("opted_out"), pa.array(opted_out))
    joined = new_customers(rng, new_ids, DAY1, DAY1 + 1, first_orders(rng, len(new_ids)))
    return pa.concat_tables([changed, joined])


def write_chunk(out: Path, seed: int, rows: int, chunk_rows: int, index: int) -> int:
    """Generate chunk `index` of both days and write it as DIR/dayN/part-index.parquet."""
    start = index * chunk_rows
    count = min(chunk_rows, rows - start)
    rng = np.random.default_rng([seed, index])
    ids = np.arange(start + 1, start + count + 1, dtype=np.int64)
    day1 = new_customers(rng, ids, FIRST_SIGNUP_DAY, DAY1)

    joined_count = int(round(count * 0.005))
    new_ids = np.arange(rows + start + 1, rows + start + joined_count + 1, dtype=np.int64)
    day2 = next_day(np.random.default_rng([seed, index, 2]), day1, new_ids)

    for day, table in (("day1", day1), ("day2", day2)):
        pq.write_table(table, out / day / f"part-{index:05d}.parquet", compression="zstd", row_group_size=256 * 1024)
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, required=True, help="number of customers on day 1")
    parser.add_argument("--seed", type=int, default=1, help="seed of the random generator")
    parser.add_argument("--out", type=Path, required=True, help="output folder, in which day1/ and day2/ are created")
    parser.add_argument("--chunk-rows", type=int, default=1_000_000, help="rows per chunk and per output file")
    parser.add_argument("--jobs", type=int, default=os.cpu_count(), help="number of chunks generated in parallel")
    args = parser.parse_args()

    for day in ("day1", "day2"):
        (args.out / day).mkdir(parents=True, exist_ok=True)
    chunk_count = -(-args.rows // args.chunk_rows)
    started = time.monotonic()
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        futures = [pool.submit(write_chunk, args.out, args.seed, args.rows, args.chunk_rows, i) for i in range(chunk_count)]
        written = sum(future.result() for future in futures)

    description = {"rows": args.rows, "seed": args.seed, "chunk_rows": args.chunk_rows, "files_per_day": chunk_count}
    (args.out / "extract.json").write_text(json.dumps(description, indent=2) + "\n")
    print(f"wrote {written} day-1 customers in {chunk_count} files per day to {args.out} in {time.monotonic() - started:.1f} s")


if __name__ == "__main__":
    main()
