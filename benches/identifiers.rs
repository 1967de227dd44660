//! Throughput of identifier normalization and hashing over one million Arrow values.
//!
//! Each iteration builds a `Normalizer`, pushes one `Utf8View` column of 1,000,000 values
//! and calls `finish`, so the time includes sorting and deduplicating the digests. The
//! `sha256_only` case hashes the same emails as they are, for the bare cost of SHA-256.
//!
//! Run with `cargo bench --bench identifiers -- --warm-up-time 1 --measurement-time 3`.

use std::hint::black_box;

use audience_sync::identifiers::{IdentifierType, NormalizeOptions, Normalizer, sha256};
use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use datafusion::arrow::array::StringViewArray;

const ROWS: usize = 1_000_000;

const FIRST_NAMES: [&str; 12] = [
    "john",
    "Marie",
    "ahmed",
    "li",
    "Sofia",
    "jean-pierre",
    "o'brien",
    "Anna",
    "kenji",
    "Lucas",
    "fatima",
    "ELENA",
];
const LAST_NAMES: [&str; 10] = [
    "doe", "Martin", "smith", "Nguyen", "garcia", "MULLER", "rossi", "kowalski", "chen", "silva",
];
const DOMAINS: [&str; 10] = [
    "gmail.com",
    "Yahoo.fr",
    "hotmail.com",
    "outlook.com",
    "orange.fr",
    "gmx.de",
    "icloud.com",
    "example.co.uk",
    "free.fr",
    "company-mail.com",
];

/// Small deterministic generator, so every run hashes the same data.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() % items.len() as u64) as usize]
    }
}

/// Emails as they come out of a CRM: mostly clean, some padded or upper-case, about 1 %
/// non-ASCII, 1 % invalid, 10 % duplicates of earlier rows and 1 % nulls.
fn crm_emails() -> StringViewArray {
    let mut rng = SplitMix(20_251_204);
    let mut values: Vec<Option<String>> = Vec::with_capacity(ROWS);
    for row in 0..ROWS {
        let roll = rng.next() % 100;
        let number = rng.next() % 10_000;
        let (first, last, domain) = (
            rng.pick(&FIRST_NAMES),
            rng.pick(&LAST_NAMES),
            rng.pick(&DOMAINS),
        );
        let value = match roll {
            0 => None,
            1 => Some(format!("{first}.{last}{number}@")),
            2 => Some(format!("jos\u{E9}.{last}{number}@{domain}")),
            3..=5 => Some(format!("  {first}.{last}{number}@{domain} ")),
            6..=8 => Some(format!("{first}.{last}{number}@{domain}").to_uppercase()),
            9..=18 if row > 0 => values[(rng.next() % row as u64) as usize].clone(),
            _ => Some(format!("{first}.{last}{number}@{domain}")),
        };
        values.push(value);
    }
    StringViewArray::from_iter(values)
}

/// Phone numbers in international, `00` and French national forms.
fn phone_numbers() -> StringViewArray {
    let mut rng = SplitMix(33);
    let values = (0..ROWS).map(|_| {
        let n = rng.next() % 100_000_000;
        let (a, b, c, d) = (n / 1_000_000, n / 10_000 % 100, n / 100 % 100, n % 100);
        match rng.next() % 3 {
            0 => format!("+33 6 {a:02} {b:02} {c:02} {d:02}"),
            1 => format!("0033 7 {a:02}.{b:02}.{c:02}.{d:02}"),
            _ => format!("06 {a:02} {b:02} {c:02} {d:02}"),
        }
    });
    StringViewArray::from_iter_values(values)
}

fn normalize(identifier_type: IdentifierType, column: &StringViewArray) -> usize {
    let options = NormalizeOptions {
        default_country: Some("FR".into()),
    };
    let mut normalizer = Normalizer::new(identifier_type, &options).unwrap();
    normalizer.push_array(column).unwrap();
    normalizer.finish().set.len()
}

fn bench_identifiers(c: &mut Criterion) {
    let emails = crm_emails();
    let phones = phone_numbers();

    let mut group = c.benchmark_group("identifiers_1m");
    group.sample_size(10).sampling_mode(SamplingMode::Flat);
    group.throughput(Throughput::Elements(ROWS as u64));

    group.bench_function("email", |b| {
        b.iter(|| normalize(IdentifierType::Email, black_box(&emails)))
    });
    group.bench_function("phone", |b| {
        b.iter(|| normalize(IdentifierType::PhoneNumber, black_box(&phones)))
    });
    group.bench_function("sha256_only", |b| {
        b.iter(|| {
            emails
                .iter()
                .flatten()
                .map(|e| sha256(e.as_bytes())[0] as u64)
                .sum::<u64>()
        })
    });
    group.finish();
}

criterion_group!(benches, bench_identifiers);
criterion_main!(benches);
