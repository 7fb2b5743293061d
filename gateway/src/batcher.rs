//! Dynamic batching: one bounded queue per loaded version and one worker
//! thread per backend session, grouping waiting requests into one call.
//!
//! A worker takes the first request, then whatever else is waiting (up to
//! `max_batch_size` rows, waiting at most `max_queue_delay_us` for more),
//! runs them as one batch and hands each request its own rows back. The
//! queue is bounded: a full queue refuses at once (the caller answers 429),
//! so memory never grows with load. Requests whose caller has gone or whose
//! deadline has passed are dropped before they cost an inference.
//!
//! A request small enough to run within [`Batcher::run_now`]'s budget runs
//! on the thread that received it when its version is idle (nothing
//! queued, a session free, room in the thread budget): for a model that
//! answers in a few microseconds, handing the request to a worker thread
//! and waking the caller again costs more than the model. Sessions live in
//! a pool that workers and such callers borrow from, so each session still
//! runs one call at a time.
//!
//! Dropping the [`Batcher`] closes the queue; the workers finish what is
//! queued, then exit and free their sessions.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError, bounded};
use switchyard_api::manifest::Batching;
use tokio::sync::oneshot;

use crate::backend::Session;
use crate::metrics::VersionMetrics;
use crate::tensor::{Tensor, concat_rows, same_row_shape, take_rows};

/// What a queued request gets back.
pub type Reply = Result<Vec<Tensor>, RunError>;

/// One queued request.
#[derive(Debug)]
pub struct Job {
    /// Every input of the model, in the manifest's order.
    pub inputs: Vec<Tensor>,
    /// Rows in this request (the inputs' first dimension).
    pub rows: usize,
    /// Past this instant the request is answered with a timeout, not run.
    pub deadline: Instant,
    /// When it was queued.
    pub enqueued: Instant,
    /// Where the answer goes.
    pub reply: oneshot::Sender<Reply>,
}

/// Why a queued request produced no outputs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RunError {
    /// Its deadline passed while it waited.
    #[error("deadline passed while queued")]
    DeadlineExceeded,
    /// The backend failed on its batch.
    #[error("{0}")]
    Backend(String),
}

/// Why a request could not be queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    /// The queue is full.
    #[error("queue full")]
    Full,
    /// The version is being unloaded.
    #[error("version unloading")]
    Closed,
}

/// The shared budget of inference threads: at most this many backend calls
/// run at once, across every loaded model.
#[derive(Debug, Clone)]
pub struct ThreadBudget {
    take: Receiver<()>,
    give: Sender<()>,
}

struct Permit<'a>(&'a ThreadBudget);

/// The idle sessions of one version: taken for a call, given back after.
#[derive(Clone)]
struct Pool {
    take: Receiver<Box<dyn Session>>,
    give: Sender<Box<dyn Session>>,
}

/// A session borrowed from the pool; it goes back when this drops, even
/// when the call panicked, so no worker waits for a session that is gone.
struct Lent<'a> {
    session: Option<Box<dyn Session>>,
    pool: &'a Pool,
}

/// Which requests of a version may run on the thread that received them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Inline {
    /// The largest request, in rows (0: none).
    pub rows: usize,
    /// How long such a run may take (the limit warm-up timed against).
    pub max: Duration,
}

impl Inline {
    /// No request runs inline.
    pub const OFF: Inline = Inline {
        rows: 0,
        max: Duration::ZERO,
    };
}

/// The queue of one loaded version.
pub struct Batcher {
    queue: Sender<Job>,
    depth: Receiver<Job>,
    pool: Pool,
    budget: ThreadBudget,
    metrics: VersionMetrics,
    inline_rows: usize,
    /// Requests of this version between admission and answer.
    active: AtomicUsize,
    workers: Vec<JoinHandle<()>>,
}

/// Counts a request as active on its version until it drops.
#[derive(Debug)]
pub struct Active<'a>(&'a AtomicUsize);

impl Drop for Active<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl std::fmt::Debug for Batcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batcher")
            .field("queued", &self.queued())
            .field("workers", &self.workers.len())
            .field("inline_rows", &self.inline_rows)
            .finish_non_exhaustive()
    }
}

struct Worker {
    queue: Receiver<Job>,
    pool: Pool,
    spin: Duration,
    settings: Batching,
    budget: ThreadBudget,
    metrics: VersionMetrics,
    held: Option<Job>,
}

impl ThreadBudget {
    /// A budget of `threads` concurrent backend calls (at least one).
    pub fn new(threads: usize) -> ThreadBudget {
        let (give, take) = bounded(threads.max(1));
        for _ in 0..threads.max(1) {
            let _ = give.try_send(());
        }
        ThreadBudget { take, give }
    }

    fn acquire(&self) -> Permit<'_> {
        // The sender half lives in `self`, so the channel never disconnects.
        let _ = self.take.recv();
        Permit(self)
    }

    fn try_acquire(&self) -> Option<Permit<'_>> {
        self.take.try_recv().ok().map(|()| Permit(self))
    }
}

impl Pool {
    fn new(sessions: Vec<Box<dyn Session>>) -> Pool {
        let (give, take) = bounded(sessions.len().max(1));
        for session in sessions {
            // Capacity is the number of sessions, so this never fails.
            let _ = give.try_send(session);
        }
        Pool { take, give }
    }

    /// Waits for a free session. Every session taken is given back by
    /// [`Lent`]'s drop, and the pool holds both halves of its channel, so
    /// this returns once the current holder is done. A holder on a
    /// caller's thread runs one small request (within the inline limit),
    /// so the wait starts spinning for that long instead of parking: going
    /// to sleep and being woken costs more than such a request.
    fn borrow(&self, spin: Duration) -> Option<Lent<'_>> {
        let started = Instant::now();
        let mut session = None;
        while session.is_none() {
            match self.take.try_recv() {
                Ok(s) => session = Some(s),
                Err(_) if started.elapsed() < spin => {
                    for _ in 0..32 {
                        std::hint::spin_loop();
                    }
                }
                Err(_) => session = Some(self.take.recv().ok()?),
            }
        }
        let session = session?;
        Some(Lent {
            session: Some(session),
            pool: self,
        })
    }

    fn try_borrow(&self) -> Option<Lent<'_>> {
        let session = self.take.try_recv().ok()?;
        Some(Lent {
            session: Some(session),
            pool: self,
        })
    }
}

impl Lent<'_> {
    fn run(&mut self, inputs: &[Tensor]) -> Result<Vec<Tensor>, crate::backend::BackendError> {
        match self.session.as_mut() {
            Some(session) => session.run(inputs),
            None => Err(crate::backend::BackendError::Run {
                backend: "batcher",
                message: "no session".to_owned(),
            }),
        }
    }
}

impl Drop for Lent<'_> {
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            let _ = self.pool.give.try_send(session);
        }
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        let _ = self.0.give.try_send(());
    }
}

impl Batcher {
    /// Starts one worker thread per session. Requests of up to
    /// `inline.rows` rows may run on their caller's thread when the version
    /// is idle; it only applies without a queue delay, since a delay asks
    /// every request to wait for company.
    ///
    /// # Errors
    /// When the OS refuses a thread.
    pub fn start(
        name: &str,
        sessions: Vec<Box<dyn Session>>,
        settings: Batching,
        inline: Inline,
        budget: &ThreadBudget,
        metrics: &VersionMetrics,
    ) -> std::io::Result<Batcher> {
        let inline = if settings.max_queue_delay_us == 0 {
            inline
        } else {
            Inline::OFF
        };
        let spin = if inline.rows > 0 {
            inline.max
        } else {
            Duration::ZERO
        };
        let (queue, rx) = bounded(settings.queue_capacity as usize);
        let count = sessions.len();
        let pool = Pool::new(sessions);
        let mut workers = Vec::with_capacity(count);
        for i in 0..count {
            let worker = Worker {
                queue: rx.clone(),
                pool: pool.clone(),
                spin,
                settings,
                budget: budget.clone(),
                metrics: metrics.clone(),
                held: None,
            };
            workers.push(
                std::thread::Builder::new()
                    .name(format!("infer-{name}-{i}"))
                    .spawn(move || worker.run())?,
            );
        }
        Ok(Batcher {
            queue,
            depth: rx,
            pool,
            budget: budget.clone(),
            metrics: metrics.clone(),
            inline_rows: inline.rows,
            active: AtomicUsize::new(0),
            workers,
        })
    }

    /// Counts a request as active on this version until the guard drops;
    /// [`Batcher::run_now`] needs the request's own guard.
    pub fn enter(&self) -> Active<'_> {
        self.active.fetch_add(1, Ordering::Relaxed);
        Active(&self.active)
    }

    /// Runs a request on the calling thread if the version is idle: no
    /// other request active on it or queued for it (shadow copies queue
    /// without being active; under concurrent load, batching them
    /// costs less per request than running each alone), a session free and
    /// room in the thread budget, and the request no larger than the rows
    /// that warm-up found fast enough. `None` means queue it instead.
    pub fn run_now(&self, _me: &Active<'_>, inputs: &[Tensor], rows: usize) -> Option<Reply> {
        if rows > self.inline_rows
            || self.active.load(Ordering::Relaxed) > 1
            || !self.depth.is_empty()
        {
            return None;
        }
        let mut session = self.pool.try_borrow()?;
        let permit = self.budget.try_acquire()?;
        let t0 = Instant::now();
        let result = session.run(inputs);
        let took = t0.elapsed();
        drop(permit);
        drop(session);
        self.metrics.queue.observe(0.0);
        self.metrics.inference.observe(took.as_secs_f64());
        self.metrics.batch_size.observe(rows as f64);
        self.metrics.inline.inc();
        Some(result.map_err(|e| RunError::Backend(e.to_string())))
    }

    /// The largest request, in rows, that may run on its caller's thread.
    pub fn inline_rows(&self) -> usize {
        self.inline_rows
    }

    /// Queues a request without waiting.
    ///
    /// # Errors
    /// [`SubmitError::Full`] when the queue is at capacity.
    pub fn submit(&self, job: Job) -> Result<(), SubmitError> {
        match self.queue.try_send(job) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => Err(SubmitError::Full),
            Err(TrySendError::Disconnected(_)) => Err(SubmitError::Closed),
        }
    }

    /// Requests waiting now.
    pub fn queued(&self) -> usize {
        self.depth.len()
    }

    /// Number of worker threads.
    pub fn workers(&self) -> usize {
        self.workers.len()
    }
}

impl Worker {
    fn run(mut self) {
        while let Some(first) = self.next_first() {
            let batch = self.gather(first);
            self.metrics.queue_depth.set(self.queue.len() as i64);
            if !batch.is_empty() {
                self.execute(batch);
            }
        }
    }

    fn next_first(&mut self) -> Option<Job> {
        loop {
            let job = match self.held.take() {
                Some(job) => job,
                None => self.queue.recv().ok()?,
            };
            if let Some(job) = live(job) {
                return Some(job);
            }
        }
    }

    /// Adds waiting requests to `first` until the batch is full, the delay
    /// has passed, or the next request has a different row shape.
    fn gather(&mut self, first: Job) -> Vec<Job> {
        let max_rows = self.settings.max_batch_size as usize;
        let close_at = first.enqueued + Duration::from_micros(self.settings.max_queue_delay_us);
        let mut rows = first.rows;
        let mut batch = vec![first];
        while rows < max_rows {
            let next = if self.settings.max_queue_delay_us == 0 {
                self.queue.try_recv().ok()
            } else {
                self.queue.recv_deadline(close_at).ok()
            };
            let Some(job) = next.and_then(live) else {
                break;
            };
            let fits = rows + job.rows <= max_rows
                && job.inputs.len() == batch[0].inputs.len()
                && job
                    .inputs
                    .iter()
                    .zip(&batch[0].inputs)
                    .all(|(a, b)| same_row_shape(a, b));
            if !fits {
                self.held = Some(job);
                break;
            }
            rows += job.rows;
            batch.push(job);
        }
        batch
    }

    fn execute(&mut self, batch: Vec<Job>) {
        let started = Instant::now();
        for job in &batch {
            self.metrics.queue.observe(
                started
                    .saturating_duration_since(job.enqueued)
                    .as_secs_f64(),
            );
        }
        let rows: usize = batch.iter().map(|j| j.rows).sum();
        let Some(mut session) = self.pool.borrow(self.spin) else {
            // The pool holds both ends of its channel: not reachable.
            for job in batch {
                let _ = job
                    .reply
                    .send(Err(RunError::Backend("no session".to_owned())));
            }
            return;
        };
        let result = {
            let _permit = self.budget.acquire();
            let t0 = Instant::now();
            let result = if batch.len() == 1 {
                session.run(&batch[0].inputs)
            } else {
                stack(&batch).and_then(|inputs| session.run(&inputs))
            };
            self.metrics.inference.observe(t0.elapsed().as_secs_f64());
            result
        };
        drop(session);
        self.metrics.batch_size.observe(rows as f64);
        match result {
            Err(e) => {
                let err = RunError::Backend(e.to_string());
                for job in batch {
                    let _ = job.reply.send(Err(err.clone()));
                }
            }
            Ok(outputs) if batch.len() == 1 => {
                if let Some(job) = batch.into_iter().next() {
                    let _ = job.reply.send(Ok(outputs));
                }
            }
            Ok(outputs) => {
                let mut start = 0;
                for job in batch {
                    let mine: Result<Vec<Tensor>, String> = outputs
                        .iter()
                        .map(|o| take_rows(o, start, job.rows))
                        .collect();
                    start += job.rows;
                    let _ = job.reply.send(mine.map_err(RunError::Backend));
                }
            }
        }
    }
}

/// Stacks every input of the batch along the first dimension.
fn stack(batch: &[Job]) -> Result<Vec<Tensor>, crate::backend::BackendError> {
    (0..batch[0].inputs.len())
        .map(|i| {
            let parts: Vec<&Tensor> = batch.iter().map(|j| &j.inputs[i]).collect();
            concat_rows(&parts).map_err(|t| crate::backend::BackendError::Run {
                backend: "batcher",
                message: format!(
                    "cannot stack input {:?} of type {t}",
                    batch[0].inputs[i].name
                ),
            })
        })
        .collect()
}

/// The job, unless its caller has gone or its deadline has passed (then it
/// is answered here and dropped).
fn live(job: Job) -> Option<Job> {
    if job.reply.is_closed() {
        return None;
    }
    if Instant::now() >= job.deadline {
        let _ = job.reply.send(Err(RunError::DeadlineExceeded));
        return None;
    }
    Some(job)
}

impl Drop for Batcher {
    fn drop(&mut self) {
        // Workers exit once the queue is closed and drained; they are not
        // joined here, because the last request to drop a version may be on
        // the async runtime, which must not block.
        self.workers.clear();
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use super::*;
    use crate::backend::Backend;
    use crate::backend::fake::FakeBackend;
    use crate::metrics::Metrics;
    use crate::tensor::TensorData;
    use crate::test_support::manifest;

    fn batcher(fake: &FakeBackend, delay_us: u64, rows: usize) -> (Batcher, VersionMetrics) {
        let manifest = manifest(8, delay_us);
        let session = fake.load(Path::new("model.onnx"), &manifest).unwrap();
        let metrics = Metrics::new().version("m", 1, "blue");
        let inline = Inline {
            rows,
            max: Duration::from_micros(100),
        };
        let batcher = Batcher::start(
            "m-1",
            vec![session],
            manifest.batching,
            inline,
            &ThreadBudget::new(1),
            &metrics,
        )
        .unwrap();
        (batcher, metrics)
    }

    fn input(rows: usize) -> Vec<Tensor> {
        vec![Tensor {
            name: "input".into(),
            shape: vec![rows, 2],
            data: TensorData::F32(vec![1.0; rows * 2]),
        }]
    }

    #[test]
    fn an_idle_version_runs_a_small_request_on_the_callers_thread() {
        let fake = FakeBackend::default();
        let (batcher, metrics) = batcher(&fake, 0, 2);
        let me = batcher.enter();
        let outputs = batcher.run_now(&me, &input(2), 2).unwrap().unwrap();
        assert_eq!(outputs[0].shape, vec![2]);
        assert_eq!(fake.batches.load(Ordering::SeqCst), 1);
        assert_eq!(metrics.inline.get(), 1);
        assert_eq!(metrics.batch_size.get_sample_count(), 1);

        // Larger than warm-up allowed: queue it.
        assert!(batcher.run_now(&me, &input(3), 3).is_none());
        // Another request is active on the version: queue it, so concurrent
        // requests are batched.
        let other = batcher.enter();
        assert!(batcher.run_now(&me, &input(1), 1).is_none());
        drop(other);
        assert!(batcher.run_now(&me, &input(1), 1).is_some());
        assert_eq!(metrics.inline.get(), 2);
    }

    #[test]
    fn a_queue_delay_or_a_slow_model_keeps_every_request_on_the_worker() {
        let fake = FakeBackend::default();
        let (delayed, _) = batcher(&fake, 500, 8);
        assert_eq!(delayed.inline_rows(), 0);
        let me = delayed.enter();
        assert!(delayed.run_now(&me, &input(1), 1).is_none());
        let (slow, _) = batcher(&fake, 0, 0);
        let me = slow.enter();
        assert!(slow.run_now(&me, &input(1), 1).is_none());
    }

    #[test]
    fn a_worker_waits_for_a_session_lent_to_a_caller_and_every_request_is_answered() {
        let fake = FakeBackend {
            delay: Duration::from_micros(200),
            ..FakeBackend::default()
        };
        let (batcher, _) = batcher(&fake, 0, 8);
        let batcher = Arc::new(batcher);
        let callers: Vec<_> = (0..4)
            .map(|_| {
                let batcher = batcher.clone();
                std::thread::spawn(move || {
                    let mut answered = 0;
                    for _ in 0..50 {
                        let me = batcher.enter();
                        let reply = match batcher.run_now(&me, &input(1), 1) {
                            Some(reply) => reply,
                            None => {
                                let (tx, rx) = oneshot::channel();
                                let now = Instant::now();
                                batcher
                                    .submit(Job {
                                        inputs: input(1),
                                        rows: 1,
                                        deadline: now + Duration::from_secs(10),
                                        enqueued: now,
                                        reply: tx,
                                    })
                                    .unwrap();
                                rx.blocking_recv().unwrap()
                            }
                        };
                        assert_eq!(reply.unwrap()[0].shape, vec![1]);
                        answered += 1;
                    }
                    answered
                })
            })
            .collect();
        let answered: usize = callers.into_iter().map(|c| c.join().unwrap()).sum();
        assert_eq!(answered, 200);
        assert_eq!(fake.rows.load(Ordering::SeqCst), 200);
    }
}
