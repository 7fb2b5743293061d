//! Live drift: every served row's feature values counted into the bins of
//! its version's reference profile, over a sliding time window.
//!
//! The window is a ring of time buckets, each a block of atomic counters,
//! kept once per shard (one per core): a request thread adds to its shard's
//! current bucket with relaxed atomics — no lock, no allocation, and no
//! cache line bounced between cores. When time moves into a bucket last
//! used a full window ago, the first request there claims it (an epoch tag
//! swapped to a "resetting" mark), zeroes it and tags it with the new
//! epoch; the few requests that meet the mark wait for that zeroing.
//! Statistics are computed only when someone asks (`/metrics`, the admin
//! API), from a snapshot of every shard's buckets inside the window.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use switchyard_api::Manifest;
use switchyard_api::drift::{
    DriftReport, DriftSettings, FAR_RANGES, FeatureCounts, Stat, VersionDrift,
};
use switchyard_api::profile::{FeatureKind, FeatureProfile, Profile, ProfileError};

use crate::tensor::{Tensor, TensorData, with_vec};

/// An epoch tag meaning "being zeroed"; tags are `epoch + 1`, 0 is unused.
const RESETTING: u64 = u64::MAX;
/// Spins a request makes while another thread zeroes its bucket, before
/// it yields the core instead (the zeroing thread may have been
/// descheduled mid-way; it is straight-line code and always finishes).
const RESET_SPINS: u32 = 100;

/// The drift window of one loaded version.
#[derive(Debug)]
pub struct DriftTracker {
    profile: Profile,
    settings: DriftSettings,
    columns: Box<[Column]>,
    prediction: Option<Column>,
    /// Counters per bucket.
    stride: usize,
    /// Which counters of a bucket hold sums (f64 bits) rather than counts.
    is_sum: Box<[bool]>,
    /// One ring of buckets per shard: request threads count into their own
    /// shard, so two cores never fight over one counter's cache line.
    rings: Box<[Ring]>,
    bucket_nanos: u64,
    origin: Instant,
}

/// The window's buckets: per bucket an epoch tag, a row count and `stride`
/// counters.
#[derive(Debug)]
struct Ring {
    counts: Box<[AtomicU64]>,
    rows: Box<[AtomicU64]>,
    tags: Box<[AtomicU64]>,
}

impl Ring {
    fn new(buckets: usize, stride: usize) -> Ring {
        Ring {
            counts: (0..stride * buckets).map(|_| AtomicU64::new(0)).collect(),
            rows: (0..buckets).map(|_| AtomicU64::new(0)).collect(),
            tags: (0..buckets).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

/// The most shards a tracker keeps (memory grows with them).
const MAX_SHARDS: usize = 8;

thread_local! {
    /// This thread's shard number, handed out round-robin on first use.
    static SHARD: usize = {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        NEXT.fetch_add(1, Ordering::Relaxed) as usize
    };
}

/// Where one profiled value lives in the tensors and in the counters.
#[derive(Debug)]
struct Column {
    /// Index of its tensor in the manifest's inputs (or outputs).
    tensor: usize,
    /// Its tensor's name, checked on the request path.
    name: String,
    /// Its column in the last dimension.
    column: usize,
    /// Its first counter within a bucket.
    offset: usize,
    bins: Bins,
}

#[derive(Debug)]
enum Bins {
    /// Edges; counters: the bins, then below, above, missing, and the sums
    /// (as f64 bits) of the values below and above.
    Numeric(Box<[f64]>),
    /// Sorted values; counters: one per value, then unseen, missing.
    Categorical(Box<[f64]>),
}

impl Bins {
    fn counters(&self) -> usize {
        match self {
            Bins::Numeric(edges) => edges.len() - 1 + 5,
            Bins::Categorical(values) => values.len() + 2,
        }
    }
}

/// Element types as f64, for binning.
trait AsF64: Copy {
    fn as_f64(self) -> f64;
}

macro_rules! as_f64_lossless {
    ($($t:ty),*) => {$(impl AsF64 for $t {
        #[inline]
        fn as_f64(self) -> f64 { f64::from(self) }
    })*};
}
as_f64_lossless!(u8, u16, u32, i8, i16, i32, f32, f64);

macro_rules! as_f64_rounded {
    ($($t:ty),*) => {$(impl AsF64 for $t {
        #[inline]
        #[allow(clippy::cast_precision_loss)] // beyond 2^53 a bin is all the same
        fn as_f64(self) -> f64 { self as f64 }
    })*};
}
as_f64_rounded!(u64, i64);

impl AsF64 for bool {
    #[inline]
    fn as_f64(self) -> f64 {
        f64::from(u8::from(self))
    }
}

impl DriftTracker {
    /// Reads a version's profile and sets up its window. `Ok(None)` when the
    /// manifest names no profile.
    ///
    /// # Errors
    /// [`ProfileError`] when the profile does not parse or does not fit the
    /// manifest, naming the feature.
    pub fn for_version(
        manifest: &Manifest,
        dir: &std::path::Path,
    ) -> Result<Option<DriftTracker>, ProfileError> {
        let Some(file) = &manifest.profile else {
            return Ok(None);
        };
        let profile = Profile::load(&dir.join(file), manifest)?;
        Ok(Some(DriftTracker::new(profile, manifest)))
    }

    /// A tracker for a profile already checked against `manifest`.
    pub fn new(profile: Profile, manifest: &Manifest) -> DriftTracker {
        let settings = manifest.drift.clone();
        let mut offset = 0;
        let mut column = |f: &FeatureProfile, tensor: usize, name: &str| {
            let bins = match f.kind {
                FeatureKind::Numeric => Bins::Numeric(f.edges.clone().into()),
                FeatureKind::Categorical => Bins::Categorical(f.values.clone().into()),
            };
            let c = Column {
                tensor,
                name: name.to_owned(),
                column: f.column,
                offset,
                bins,
            };
            offset += c.bins.counters();
            c
        };
        let columns: Vec<Column> = profile
            .features
            .iter()
            .filter_map(|f| {
                let input = f.input.as_deref()?;
                let index = manifest.inputs.iter().position(|s| s.name == input)?;
                Some(column(f, index, input))
            })
            .collect();
        let prediction = profile.prediction.as_ref().and_then(|p| {
            let output = p.output.as_deref()?;
            let index = manifest.outputs.iter().position(|s| s.name == output)?;
            Some(column(p, index, output))
        });
        let stride = offset;
        let mut is_sum = vec![false; stride];
        for c in columns.iter().chain(&prediction) {
            if let Bins::Numeric(edges) = &c.bins {
                let k = edges.len() - 1;
                is_sum[c.offset + k + 3] = true;
                is_sum[c.offset + k + 4] = true;
            }
        }
        let buckets = settings.buckets.max(1) as usize;
        let window = settings.window_duration();
        let bucket_nanos = u64::try_from((window / settings.buckets.max(1)).as_nanos())
            .unwrap_or(u64::MAX)
            .max(1);
        DriftTracker {
            profile,
            settings,
            columns: columns.into(),
            prediction,
            stride,
            is_sum: is_sum.into(),
            rings: (0..shards()).map(|_| Ring::new(buckets, stride)).collect(),
            bucket_nanos,
            origin: Instant::now(),
        }
    }

    /// The settings in force.
    pub fn settings(&self) -> &DriftSettings {
        &self.settings
    }

    /// The profile.
    pub fn profile(&self) -> &Profile {
        &self.profile
    }

    fn epoch(&self, now: Instant) -> u64 {
        let nanos = now.saturating_duration_since(self.origin).as_nanos();
        u64::try_from(nanos / u128::from(self.bucket_nanos)).unwrap_or(u64::MAX - 2)
    }

    /// This thread's ring.
    fn ring(&self) -> &Ring {
        let shard = SHARD.with(|s| *s) % self.rings.len();
        &self.rings[shard]
    }

    /// The bucket of `ring` for `now`, zeroing it first if it last held an
    /// older epoch; `None` if counting should be skipped.
    fn bucket(&self, ring: &Ring, now: Instant) -> Option<usize> {
        let epoch = self.epoch(now);
        let tag = epoch + 1;
        let slot = (epoch % ring.tags.len() as u64) as usize;
        let cell = &ring.tags[slot];
        let mut spins = 0u32;
        loop {
            let seen = cell.load(Ordering::Acquire);
            if seen == tag {
                return Some(slot);
            }
            if seen == RESETTING {
                spins += 1;
                if spins < RESET_SPINS {
                    std::hint::spin_loop();
                } else {
                    std::thread::yield_now();
                }
                continue;
            }
            if seen > tag {
                // A later epoch already took the bucket: this request
                // started before it and is too late to count.
                return None;
            }
            if cell
                .compare_exchange(seen, RESETTING, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                let base = slot * self.stride;
                for c in &ring.counts[base..base + self.stride] {
                    c.store(0, Ordering::Relaxed);
                }
                ring.rows[slot].store(0, Ordering::Relaxed);
                cell.store(tag, Ordering::Release);
                return Some(slot);
            }
        }
    }

    /// Counts the rows of a request's inputs (in the manifest's order).
    pub fn record_inputs(&self, inputs: &[Tensor], rows: usize, now: Instant) {
        if rows == 0 || self.columns.is_empty() {
            return;
        }
        let ring = self.ring();
        let Some(slot) = self.bucket(ring, now) else {
            return;
        };
        ring.rows[slot].fetch_add(rows as u64, Ordering::Relaxed);
        let base = slot * self.stride;
        for column in &*self.columns {
            if let Some(t) = inputs.get(column.tensor).filter(|t| t.name == column.name) {
                count_column(ring, column, &t.data, rows, base);
            }
        }
    }

    /// Counts the predictions of a request's outputs (in the manifest's
    /// order, all of them).
    pub fn record_outputs(&self, outputs: &[Tensor], rows: usize, now: Instant) {
        let Some(column) = &self.prediction else {
            return;
        };
        if rows == 0 {
            return;
        }
        let Some(t) = outputs.get(column.tensor).filter(|t| t.name == column.name) else {
            return;
        };
        let ring = self.ring();
        let Some(slot) = self.bucket(ring, now) else {
            return;
        };
        count_column(ring, column, &t.data, rows, slot * self.stride);
    }

    /// The window's report at `now`: counts summed over the buckets inside
    /// it and the statistics, or the reason they are withheld.
    pub fn report(&self, version: u64, now: Instant) -> VersionDrift {
        let current = self.epoch(now);
        let buckets = self.rings[0].tags.len() as u64;
        let mut totals = vec![0u64; self.stride];
        let mut sums = vec![0f64; self.stride];
        let mut rows = 0u64;
        let mut scratch = vec![0u64; self.stride];
        for (ring, slot) in self
            .rings
            .iter()
            .flat_map(|r| (0..r.tags.len()).map(move |s| (r, s)))
        {
            let tag = ring.tags[slot].load(Ordering::Acquire);
            if tag == 0 || tag == RESETTING {
                continue;
            }
            let epoch = tag - 1;
            if epoch > current || current - epoch >= buckets {
                continue;
            }
            let base = slot * self.stride;
            for (s, c) in scratch
                .iter_mut()
                .zip(&ring.counts[base..base + self.stride])
            {
                *s = c.load(Ordering::Relaxed);
            }
            let slot_rows = ring.rows[slot].load(Ordering::Relaxed);
            // Zeroed for a newer epoch while we read: that bucket just left
            // the window, leave it out.
            if ring.tags[slot].load(Ordering::Acquire) != tag {
                continue;
            }
            rows += slot_rows;
            for (i, &s) in scratch.iter().enumerate() {
                if self.is_sum[i] {
                    sums[i] += f64::from_bits(s);
                } else {
                    totals[i] += s;
                }
            }
        }
        let observed = now
            .saturating_duration_since(self.origin)
            .min(self.settings.window_duration());
        let features: Vec<(&FeatureProfile, FeatureCounts)> = self
            .profile
            .features
            .iter()
            .zip(&*self.columns)
            .map(|(f, c)| (f, unpack(c, &totals, &sums)))
            .collect();
        let prediction = self
            .profile
            .prediction
            .as_ref()
            .zip(self.prediction.as_ref())
            .map(|(p, c)| (p, unpack(c, &totals, &sums)));
        VersionDrift::measure(
            version,
            &self.settings,
            rows,
            observed.as_secs_f64(),
            features,
            prediction,
        )
    }

    /// The length of one time bucket.
    pub fn bucket_length(&self) -> Duration {
        Duration::from_nanos(self.bucket_nanos)
    }
}

fn count_column(ring: &Ring, column: &Column, data: &TensorData, rows: usize, base: usize) {
    let per_row = data.len() / rows;
    if column.column >= per_row {
        return;
    }
    let counters =
        &ring.counts[base + column.offset..base + column.offset + column.bins.counters()];
    let bins = &column.bins;
    with_vec!(data, v => {
        let values = v.iter().skip(column.column).step_by(per_row).map(|x| x.as_f64());
        if rows == 1 || counters.len() > TALLY_COUNTERS {
            for x in values {
                bins.place(x).add_to(counters);
            }
        } else {
            let mut tally = Tally::new();
            for x in values {
                tally.add(bins.place(x));
            }
            tally.add_to(bins, counters);
        }
    });
}

/// Shards per tracker: one per core, up to [`MAX_SHARDS`].
fn shards() -> usize {
    std::thread::available_parallelism()
        .map_or(1, std::num::NonZero::get)
        .clamp(1, MAX_SHARDS)
}

/// The most counters a column may have for a request's values to be
/// tallied on the stack before they reach the shared counters; a column
/// with more (a categorical feature of many values) counts straight in.
const TALLY_COUNTERS: usize = 64;

/// Up to this many inner edges, a value's bin is found by comparing it
/// with every edge rather than by binary search.
const LINEAR_EDGES: usize = 32;

/// Where one value is counted.
#[derive(Debug, Clone, Copy)]
enum Place {
    /// In this counter.
    In(usize),
    /// In this counter ("below" the reference range), with the clamped
    /// value added to the sum three counters on.
    Below(usize, f64),
    /// In this counter ("above", right after "below"), with the clamped
    /// value added to the sum three counters on.
    Above(usize, f64),
}

impl Bins {
    #[inline]
    fn place(&self, v: f64) -> Place {
        match self {
            Bins::Numeric(edges) => {
                let k = edges.len() - 1;
                let (lo, hi) = (edges[0], edges[k]);
                if v.is_nan() {
                    Place::In(k + 2)
                } else if v < lo {
                    Place::Below(k, v.max(lo - FAR_RANGES * (hi - lo)))
                } else if v > hi {
                    Place::Above(k + 1, v.min(hi + FAR_RANGES * (hi - lo)))
                } else {
                    // The inner edges `v` has reached are its bin (`hi`
                    // itself is in the last one). Few edges are counted
                    // without branches, which beats a binary search's
                    // chain of dependent loads.
                    let inner = &edges[1..k];
                    Place::In(if inner.len() <= LINEAR_EDGES {
                        inner.iter().filter(|&&e| e <= v).count()
                    } else {
                        inner.partition_point(|&e| e <= v)
                    })
                }
            }
            Bins::Categorical(values) => {
                if v.is_nan() {
                    return Place::In(values.len() + 1);
                }
                let at = values.partition_point(|&x| x < v);
                if values.get(at) == Some(&v) {
                    Place::In(at)
                } else {
                    Place::In(values.len())
                }
            }
        }
    }
}

impl Place {
    /// Counts one value straight into the shared counters.
    #[inline]
    fn add_to(self, counters: &[AtomicU64]) {
        match self {
            Place::In(i) => {
                counters[i].fetch_add(1, Ordering::Relaxed);
            }
            Place::Below(i, v) | Place::Above(i, v) => {
                counters[i].fetch_add(1, Ordering::Relaxed);
                add_f64(&counters[i + 3], v);
            }
        }
    }
}

/// One request's values of one column, counted on the stack and added to
/// the shared counters once per counter: an atomic add per value is a
/// full barrier on x86 and cost more than finding the value's bin.
struct Tally {
    counts: [u64; TALLY_COUNTERS],
    /// Sums of the clamped values below and above the range.
    sums: [f64; 2],
}

impl Tally {
    fn new() -> Tally {
        Tally {
            counts: [0; TALLY_COUNTERS],
            sums: [0.0; 2],
        }
    }

    #[inline]
    fn add(&mut self, place: Place) {
        match place {
            Place::In(i) => self.counts[i] += 1,
            Place::Below(i, v) => {
                self.counts[i] += 1;
                self.sums[0] += v;
            }
            Place::Above(i, v) => {
                self.counts[i] += 1;
                self.sums[1] += v;
            }
        }
    }

    fn add_to(&self, bins: &Bins, counters: &[AtomicU64]) {
        for (counter, &n) in counters.iter().zip(&self.counts) {
            if n > 0 {
                counter.fetch_add(n, Ordering::Relaxed);
            }
        }
        if let Bins::Numeric(edges) = bins {
            // "below" is counter k, "above" k + 1 (see `Bins::place`).
            let below = edges.len() - 1;
            for (i, sum) in [below, below + 1].into_iter().zip(self.sums) {
                if self.counts[i] > 0 {
                    add_f64(&counters[i + 3], sum);
                }
            }
        }
    }
}

/// Adds to an f64 kept as bits. Only values outside the reference range
/// take this path (a tallied request once per side and column), so the
/// compare-and-swap loop is rare.
fn add_f64(cell: &AtomicU64, v: f64) {
    let _ = cell.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
        Some((f64::from_bits(bits) + v).to_bits())
    });
}

fn unpack(column: &Column, totals: &[u64], sums: &[f64]) -> FeatureCounts {
    let o = column.offset;
    match &column.bins {
        Bins::Numeric(edges) => {
            let k = edges.len() - 1;
            FeatureCounts {
                bins: totals[o..o + k].to_vec(),
                below: totals[o + k],
                above: totals[o + k + 1],
                unseen: 0,
                missing: totals[o + k + 2],
                below_sum: sums[o + k + 3],
                above_sum: sums[o + k + 4],
            }
        }
        Bins::Categorical(values) => {
            let m = values.len();
            FeatureCounts {
                bins: totals[o..o + m].to_vec(),
                below: 0,
                above: 0,
                unseen: totals[o + m],
                missing: totals[o + m + 1],
                below_sum: 0.0,
                above_sum: 0.0,
            }
        }
    }
}

/// Appends the drift metrics of every report in the Prometheus text format.
/// Label values are bounded: models and versions are loaded ones, features
/// come from profiles, and values outside a profile fall into its bins.
pub fn render(reports: &[DriftReport], out: &mut String) {
    let versions: Vec<(&str, &VersionDrift)> = reports
        .iter()
        .flat_map(|r| r.versions.iter().map(move |v| (r.model.as_str(), v)))
        .collect();
    let mut family = |name: &str, help: &str, series: &mut dyn FnMut(&mut String)| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} gauge");
        series(out);
    };
    family(
        "switchyard_drift_window_rows",
        "Rows counted in a version's live drift window.",
        &mut |out| {
            for (m, v) in &versions {
                sample(
                    out,
                    "switchyard_drift_window_rows",
                    &[("model", m), ("version", &v.version.to_string())],
                    v.rows as f64,
                );
            }
        },
    );
    family(
        "switchyard_drift_window_observed_seconds",
        "How much of the drift window has been observed (windows start empty at load and restart).",
        &mut |out| {
            for (m, v) in &versions {
                sample(
                    out,
                    "switchyard_drift_window_observed_seconds",
                    &[("model", m), ("version", &v.version.to_string())],
                    v.observed_seconds,
                );
            }
        },
    );
    family(
        "switchyard_drift_ready",
        "1 when the window has enough rows for drift statistics, 0 while they are withheld.",
        &mut |out| {
            for (m, v) in &versions {
                sample(
                    out,
                    "switchyard_drift_ready",
                    &[("model", m), ("version", &v.version.to_string())],
                    if v.ready { 1.0 } else { 0.0 },
                );
            }
        },
    );
    family(
        "switchyard_drift_feature_statistic",
        "Drift of a feature against the training data, by statistic (psi, jensenshannon, ks, wasserstein).",
        &mut |out| {
            for (m, v) in &versions {
                let version = v.version.to_string();
                for f in &v.features {
                    let Some(stats) = f.stats else { continue };
                    for stat in Stat::ALL {
                        if let Some(x) = stats.get(stat) {
                            sample(
                                out,
                                "switchyard_drift_feature_statistic",
                                &[
                                    ("model", m),
                                    ("version", &version),
                                    ("feature", &f.name),
                                    ("stat", stat.as_str()),
                                ],
                                x,
                            );
                        }
                    }
                }
            }
        },
    );
    family(
        "switchyard_drift_feature_drifted",
        "1 when a feature's deciding statistic is at or over its threshold.",
        &mut |out| {
            for (m, v) in &versions {
                let version = v.version.to_string();
                for f in &v.features {
                    if let Some(d) = f.drifted {
                        sample(
                            out,
                            "switchyard_drift_feature_drifted",
                            &[("model", m), ("version", &version), ("feature", &f.name)],
                            if d { 1.0 } else { 0.0 },
                        );
                    }
                }
            }
        },
    );
    family(
        "switchyard_drift_feature_outside_profile",
        "Values in the window outside the profile: below or above its range, unseen categories, missing (NaN).",
        &mut |out| {
            for (m, v) in &versions {
                let version = v.version.to_string();
                for f in &v.features {
                    let c = &f.counts;
                    let bins: &[(&str, u64)] = match f.kind {
                        FeatureKind::Numeric => &[
                            ("below", c.below),
                            ("above", c.above),
                            ("missing", c.missing),
                        ],
                        FeatureKind::Categorical => &[("unseen", c.unseen), ("missing", c.missing)],
                    };
                    for &(bin, n) in bins {
                        sample(
                            out,
                            "switchyard_drift_feature_outside_profile",
                            &[
                                ("model", m),
                                ("version", &version),
                                ("feature", &f.name),
                                ("bin", bin),
                            ],
                            n as f64,
                        );
                    }
                }
            }
        },
    );
    family(
        "switchyard_drift_drifted_features_ratio",
        "Share of a version's features that drifted.",
        &mut |out| {
            for (m, v) in &versions {
                if let Some(share) = v.drifted_share {
                    sample(
                        out,
                        "switchyard_drift_drifted_features_ratio",
                        &[("model", m), ("version", &v.version.to_string())],
                        share,
                    );
                }
            }
        },
    );
    family(
        "switchyard_drift_dataset_drifted",
        "1 when the share of drifted features reaches the model's drift_share.",
        &mut |out| {
            for (m, v) in &versions {
                if let Some(d) = v.dataset_drifted {
                    sample(
                        out,
                        "switchyard_drift_dataset_drifted",
                        &[("model", m), ("version", &v.version.to_string())],
                        if d { 1.0 } else { 0.0 },
                    );
                }
            }
        },
    );
    family(
        "switchyard_drift_prediction_statistic",
        "Drift of a version's predictions against their distribution on the training data.",
        &mut |out| {
            for (m, v) in &versions {
                let Some(stats) = v.prediction.as_ref().and_then(|p| p.stats) else {
                    continue;
                };
                let version = v.version.to_string();
                for stat in Stat::ALL {
                    if let Some(x) = stats.get(stat) {
                        sample(
                            out,
                            "switchyard_drift_prediction_statistic",
                            &[("model", m), ("version", &version), ("stat", stat.as_str())],
                            x,
                        );
                    }
                }
            }
        },
    );
}

fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: f64) {
    out.push_str(name);
    out.push('{');
    for (i, (k, v)) in labels.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(k);
        out.push_str("=\"");
        for ch in v.chars() {
            match ch {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                c => out.push(c),
            }
        }
        out.push('"');
    }
    if value.is_finite() {
        let _ = writeln!(out, "}} {value}");
    } else if value.is_nan() {
        out.push_str("} NaN\n");
    } else {
        out.push_str(if value > 0.0 { "} +Inf\n" } else { "} -Inf\n" });
    }
}

#[cfg(test)]
mod tests;
