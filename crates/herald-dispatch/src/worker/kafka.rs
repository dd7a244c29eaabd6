//! The worker's Kafka-side I/O besides the consumer: the write FIFO handed
//! to the sink's producer strictly in order (a full queue delays its head,
//! a record too large loses only its receiver-controlled error text,
//! anything else stops the worker), the retry partition's reader (scans and
//! watermarks), and registry syncs (wait until the registry has read its
//! topic to the current end).

use std::sync::Arc;
use std::time::Duration;

use crate::machine::Input;
use crate::scanner::Scanner;
use crate::sink::EnqueueError;

use super::{Done, Worker, WorkerError};

impl Worker {
    /// Hands queued writes to the producer, in order, until its queue is full.
    pub(super) fn flush_writes(&mut self) {
        while !self.write_blocked && self.fatal.is_none() {
            let Some((id, target, envelope)) = self.pending.front_mut() else {
                return;
            };
            let (id, target) = (*id, *target);
            match self.settings.sink.enqueue(target, self.partition, envelope) {
                Ok(landed) => {
                    self.pending.pop_front();
                    self.jobs.push(Box::pin(async move {
                        let result = landed.await.map_err(|e| e.to_string());
                        Done::Input(Input::Written { id, result })
                    }));
                }
                Err(EnqueueError::QueueFull) => {
                    self.write_blocked = true;
                    self.jobs.push(Box::pin(async {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        Done::WriteRetry
                    }));
                }
                Err(EnqueueError::TooLarge) => {
                    // Only the text a receiver controls can shrink; a payload
                    // that was accepted into the events topic fits again.
                    match envelope.attempt.as_mut() {
                        Some(a) if !a.last_error.is_empty() => {
                            tracing::warn!(partition = self.partition, endpoint_id = %envelope.endpoint_id, "retry/dead-letter record too large; dropping its error text");
                            a.last_error.clear();
                        }
                        _ => {
                            self.fatal = Some(WorkerError::Write(format!(
                                "a record for endpoint {} is larger than the broker accepts",
                                envelope.endpoint_id
                            )));
                            return;
                        }
                    }
                }
                Err(EnqueueError::Fatal(e)) => {
                    tracing::error!(partition = self.partition, error = %e, "cannot enqueue a retry/dead-letter write");
                    self.fatal = Some(WorkerError::Write(e.to_string()));
                    return;
                }
            }
        }
    }

    pub(super) fn scanner(&mut self) -> Option<Scanner> {
        if self.scanner.is_none() {
            match Scanner::new(&self.settings.kafka, &self.settings.node_id, self.partition) {
                Ok(s) => self.scanner = Some(s),
                Err(e) => {
                    tracing::error!(partition = self.partition, error = %e, "cannot create the retry scanner")
                }
            }
        }
        self.scanner.clone()
    }

    pub(super) fn fetch_catch_up_target(&mut self) {
        let Some(scanner) = self.scanner() else {
            return;
        };
        self.jobs.push(Box::pin(async move {
            loop {
                let s = scanner.clone();
                match tokio::task::spawn_blocking(move || s.watermarks()).await {
                    Ok(Ok((low, high))) => return Done::Input(Input::CatchUpTarget { low, high }),
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "retry watermark unavailable; asking again")
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "retry watermark query failed; asking again")
                    }
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }));
    }

    /// Waits until the registry has read its topic to the current end.
    pub(super) fn sync_registry(&mut self, endpoint: Arc<str>) {
        let Some(scanner) = self.scanner() else {
            self.jobs.push(Box::pin(async move {
                tokio::time::sleep(Duration::from_secs(1)).await;
                Done::Input(Input::RegistrySynced(endpoint, false))
            }));
            return;
        };
        let registry = self.settings.registry.clone();
        let topic = self.settings.kafka.endpoints_topic.clone();
        self.jobs.push(Box::pin(async move {
            let partitions = registry.progress().borrow().next_offset.len() as i32;
            let highs = tokio::task::spawn_blocking(move || {
                (0..partitions)
                    .map(|p| scanner.watermark(&topic, p))
                    .collect::<Result<Vec<i64>, _>>()
            })
            .await;
            match highs {
                Ok(Ok(highs)) => {
                    for (p, high) in highs.into_iter().enumerate() {
                        if high > 0 {
                            registry.wait_applied(p as i32, high - 1).await;
                        }
                    }
                    Done::Input(Input::RegistrySynced(endpoint, true))
                }
                other => {
                    let e = match other {
                        Ok(Err(e)) => e.to_string(),
                        Err(e) => e.to_string(),
                        Ok(Ok(_)) => unreachable!(),
                    };
                    tracing::warn!(endpoint_id = %endpoint, error = %e, "registry watermarks unavailable; asking again");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    Done::Input(Input::RegistrySynced(endpoint, false))
                }
            }
        }));
    }
}
