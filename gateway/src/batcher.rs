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
//! Dropping the [`Batcher`] closes the queue; the workers finish what is
//! queued, then exit and free their sessions.

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

/// The queue of one loaded version.
#[derive(Debug)]
pub struct Batcher {
    queue: Sender<Job>,
    depth: Receiver<Job>,
    workers: Vec<JoinHandle<()>>,
}

struct Worker {
    queue: Receiver<Job>,
    session: Box<dyn Session>,
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
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        let _ = self.0.give.try_send(());
    }
}

impl Batcher {
    /// Starts one worker thread per session.
    ///
    /// # Errors
    /// When the OS refuses a thread.
    pub fn start(
        name: &str,
        sessions: Vec<Box<dyn Session>>,
        settings: Batching,
        budget: &ThreadBudget,
        metrics: &VersionMetrics,
    ) -> std::io::Result<Batcher> {
        let (queue, rx) = bounded(settings.queue_capacity as usize);
        let mut workers = Vec::with_capacity(sessions.len());
        for (i, session) in sessions.into_iter().enumerate() {
            let worker = Worker {
                queue: rx.clone(),
                session,
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
            workers,
        })
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
        let result = {
            let _permit = self.budget.acquire();
            let t0 = Instant::now();
            let result = if batch.len() == 1 {
                self.session.run(&batch[0].inputs)
            } else {
                stack(&batch).and_then(|inputs| self.session.run(&inputs))
            };
            self.metrics.inference.observe(t0.elapsed().as_secs_f64());
            result
        };
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
