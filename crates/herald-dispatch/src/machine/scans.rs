//! Reading back what lanes left in the retry topic: a lane with no room
//! for its retry records leaves them unfinished in Kafka and remembers the
//! first (`behind`); when it has room again the core asks for a scan of
//! that endpoint's records from there ([`super::Action::Scan`]), one scan at
//! a time per partition.

use std::sync::Arc;

use super::intake::decode_payload;
use super::{Action, Ctx, Partition};
use crate::lane::CopyFate;
use crate::scanner::{ScanRequest, ScanResult};

impl Partition {
    /// Queues a scan for `endpoint` if it left records behind and has room.
    pub(super) fn maybe_scan(&mut self, endpoint: &Arc<str>) {
        if self.suspended || self.draining {
            return;
        }
        let max_lane = self.cfg.max_lane;
        let Some(lane) = self.lanes.get_mut(endpoint) else {
            return;
        };
        let Some(_) = lane.behind else { return };
        let window = lane.window(max_lane);
        let room_enough = lane.held() < window && (window == 1 || lane.held() <= window / 2);
        if lane.scanning || !room_enough {
            return;
        }
        lane.scanning = true;
        lane.ignored_from = None;
        self.scan_queue.push_back(endpoint.clone());
        self.start_scan();
    }

    fn start_scan(&mut self) {
        if self.scan_running {
            return;
        }
        let max_lane = self.cfg.max_lane;
        while let Some(endpoint) = self.scan_queue.pop_front() {
            let Some(lane) = self.lanes.get_mut(&endpoint) else {
                continue;
            };
            let Some(from) = lane.behind else {
                lane.scanning = false;
                continue;
            };
            let room = lane.window(max_lane).saturating_sub(lane.held()).max(1);
            self.scan_running = true;
            self.actions.push(Action::Scan(ScanRequest {
                endpoint,
                from,
                until: self.retry_seen_until,
                room,
            }));
            return;
        }
    }

    pub(super) fn on_scanned(
        &mut self,
        endpoint: Arc<str>,
        result: Result<ScanResult, String>,
        ctx: &mut Ctx<'_>,
    ) {
        self.scan_running = false;
        let Some(lane) = self.lanes.get_mut(&endpoint) else {
            return self.start_scan();
        };
        lane.scanning = false;
        let res = match result {
            Ok(r) => r,
            Err(e) => {
                // The lane stays behind (live records it ignored meanwhile
                // are at or after `behind`); `maintain` asks again.
                lane.ignored_from = None;
                tracing::warn!(partition = self.cfg.partition, endpoint_id = %endpoint, error = %e, "retry scan failed; will scan again");
                return self.start_scan();
            }
        };
        lane.behind = match res.stopped_at {
            Some(at) => Some(at),
            None => lane.ignored_from.take(),
        };
        for (offset, payload) in res.records {
            if !ctx.trackers.retry.is_unfinished(offset) {
                // A head copy finished ahead (its original was delivered):
                // nothing is left to carry forward.
                if let Some(lane) = self.lanes.get_mut(&endpoint) {
                    lane.copies.retain(|_, c| {
                        !(c.landed_at == Some(offset) && c.fate == CopyFate::Settled)
                    });
                }
                continue;
            }
            // Records already in memory (taken live meanwhile) are not
            // taken twice.
            if self.retry_held.contains(&offset) {
                continue;
            }
            let Ok(envelope) = decode_payload(Some(endpoint.as_bytes()), &payload) else {
                continue;
            };
            self.take_retry_record(&endpoint, offset, envelope, ctx);
        }
        if self
            .lanes
            .get(&endpoint)
            .is_some_and(|l| l.behind.is_none())
        {
            self.behind.remove(&endpoint);
        }
        self.after_settle(&endpoint, ctx);
        self.start_scan();
    }
}
