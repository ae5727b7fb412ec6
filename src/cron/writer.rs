//! Cron's writes to the store, in the order the job table made them, in
//! as few transactions as they allow: everything queued while the last
//! transaction ran commits in the next one. Changes are queued while the
//! table lock is held (so their order is the table's) and awaited after
//! it is released (so a slow disk never holds the table).

use crate::protocol::types::{CronJob, CronRun};
use crate::store::{CronStore, CronWrite, StoreError};
use std::sync::Mutex;
use tokio::sync::{mpsc, oneshot};

/// Most writes in one transaction.
const MAX_BATCH: usize = 4096;

type Ack = oneshot::Sender<Result<(), String>>;

struct Batch {
    writes: Vec<CronWrite>,
    ack: Option<Ack>,
}

pub struct Writer {
    tx: mpsc::UnboundedSender<Batch>,
    /// Taken by the task that applies the writes when it starts.
    rx: Mutex<Option<mpsc::UnboundedReceiver<Batch>>>,
}

/// A queued change; await it to know it is stored.
pub struct Pending(Option<oneshot::Receiver<Result<(), String>>>);

impl Pending {
    pub async fn stored(self) -> Result<(), StoreError> {
        match self.0 {
            Some(rx) => rx
                .await
                .map_err(|_| StoreError("the cron writer stopped".into()))?
                .map_err(StoreError),
            None => Ok(()),
        }
    }
}

impl Writer {
    pub fn new() -> Writer {
        let (tx, rx) = mpsc::unbounded_channel();
        Writer {
            tx,
            rx: Mutex::new(Some(rx)),
        }
    }

    /// Starts applying queued writes to `store`; once.
    pub fn start(&self, store: std::sync::Arc<dyn CronStore>) {
        let Some(mut rx) = self.rx.lock().expect("writer").take() else {
            return;
        };
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut writes = first.writes;
                let mut acks: Vec<Ack> = first.ack.into_iter().collect();
                while writes.len() < MAX_BATCH {
                    let Ok(more) = rx.try_recv() else { break };
                    writes.extend(more.writes);
                    acks.extend(more.ack);
                }
                let result = if writes.is_empty() {
                    Ok(())
                } else {
                    store.cron_apply(writes).await.map_err(|e| e.0)
                };
                if let Err(e) = &result {
                    tracing::error!("cron changes were not stored: {e}");
                }
                for ack in acks {
                    let _ = ack.send(result.clone());
                }
            }
        });
    }

    /// Queues writes; the returned handle tells when they are stored.
    pub fn queue(&self, writes: Vec<CronWrite>) -> Pending {
        let (ack, rx) = oneshot::channel();
        let batch = Batch {
            writes,
            ack: Some(ack),
        };
        match self.tx.send(batch) {
            Ok(()) => Pending(Some(rx)),
            Err(_) => Pending(None),
        }
    }

    pub fn save(&self, job: &CronJob) -> Pending {
        self.queue(vec![CronWrite::SaveJob(job.clone())])
    }

    pub fn record(&self, run: &CronRun, job: Option<&CronJob>, keep: u64) -> Pending {
        let mut writes = vec![CronWrite::PutRun {
            run: run.clone(),
            keep,
        }];
        writes.extend(job.map(|j| CronWrite::SaveJob(j.clone())));
        self.queue(writes)
    }

    /// Waits until everything queued so far is stored; at once when the
    /// writer never started (a cluster gateway that never ran cron).
    pub async fn flush(&self) -> Result<(), StoreError> {
        if self.rx.lock().expect("writer").is_some() {
            return Ok(());
        }
        self.queue(Vec::new()).stored().await
    }
}

impl Default for Writer {
    fn default() -> Self {
        Self::new()
    }
}
