//! Diff of sorted identifier sets: 1.2 M current hashes against a previous snapshot with
//! about 2 % churn, as in a daily run of a 10 M-row extract.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng, rngs::StdRng};

use audience_sync::diff::{apply_sorted, diff_sorted};

fn digests(count: usize, rng: &mut StdRng) -> Vec<[u8; 32]> {
    let mut values: Vec<[u8; 32]> = (0..count).map(|_| rng.random()).collect();
    values.sort_unstable();
    values.dedup();
    values
}

fn bench_diff(c: &mut Criterion) {
    let mut rng = StdRng::seed_from_u64(7);
    let previous = digests(1_200_000, &mut rng);
    // Keep 98 % of the previous members and add 2 % new ones.
    let mut current: Vec<[u8; 32]> = previous.iter().filter(|_| rng.random_ratio(98, 100)).copied().collect();
    current.extend(digests(24_000, &mut rng));
    current.sort_unstable();
    current.dedup();

    let mut group = c.benchmark_group("diff");
    group.throughput(Throughput::Elements(current.len() as u64));
    group.bench_function("diff_sorted 1.2M", |b| b.iter(|| diff_sorted(&current, &previous)));
    let (adds, removes, _) = diff_sorted(&current, &previous);
    group.bench_function("apply_sorted 1.2M", |b| b.iter(|| apply_sorted(&previous, &adds, &removes)));
    group.bench_function("sort 1.2M digests", |b| {
        b.iter_batched(
            || {
                let mut shuffled = current.clone();
                shuffled.shuffle(&mut StdRng::seed_from_u64(11));
                shuffled
            },
            |mut values| values.sort_unstable(),
            criterion::BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(benches, bench_diff);
criterion_main!(benches);
