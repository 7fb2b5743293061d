//! Routes and the routing table: which version sits in each slot of each
//! model, the traffic weights and the shadow share.
//!
//! The table is immutable; a change builds a new one and publishes it with
//! one `ArcSwap` store, so a request sees either the old routing or the new,
//! never a mix. A request picks its version once and holds that `Arc` to the
//! end, whatever the table does meanwhile.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use switchyard_api::admin::{Slot, Weights};

use crate::model::LoadedModel;

/// How a request asks to be routed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Pin {
    /// By the weights.
    #[default]
    Weighted,
    /// To one slot (the `x-slot` header).
    Slot(Slot),
    /// To the slot holding a version (the URL's version or `x-model-version`).
    Version(u64),
}

/// Why a request could not be routed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// The model has no route.
    #[error("model {0:?} is not loaded")]
    UnknownModel(String),
    /// No slot holds that version.
    #[error("version {version} of model {model:?} is not loaded")]
    UnknownVersion {
        /// The model.
        model: String,
        /// The version.
        version: u64,
    },
    /// The pinned slot is empty.
    #[error("the {slot} slot of model {model:?} is empty")]
    EmptySlot {
        /// The model.
        model: String,
        /// The slot.
        slot: Slot,
    },
}

/// One model's routing.
#[derive(Debug)]
pub struct Route {
    /// The model.
    pub model: String,
    /// The version in each slot, indexed by [`Slot::index`].
    pub slots: [Option<Arc<LoadedModel>>; 2],
    /// Traffic weights, adding up to 100.
    pub weights: Weights,
    /// The slot that takes traffic by default.
    pub live: Slot,
    /// Percent of weighted requests mirrored to the standby slot.
    pub shadow_percent: u32,
    counter: AtomicU64,
}

/// The version a request goes to, and the one that shadows it, if any.
#[derive(Debug)]
pub struct Picked {
    /// Where the request goes.
    pub model: Arc<LoadedModel>,
    /// Where a copy goes, whose answer is only compared.
    pub shadow: Option<Arc<LoadedModel>>,
}

/// Every model's route.
#[derive(Debug, Default)]
pub struct RoutingTable {
    /// Routes by model name.
    pub routes: BTreeMap<String, Arc<Route>>,
}

impl Route {
    /// A route with the given slots and settings.
    pub fn new(
        model: String,
        slots: [Option<Arc<LoadedModel>>; 2],
        weights: Weights,
        live: Slot,
        shadow_percent: u32,
    ) -> Route {
        Route {
            model,
            slots,
            weights,
            live,
            shadow_percent,
            counter: AtomicU64::new(0),
        }
    }

    /// What sits in a slot.
    pub fn slot(&self, slot: Slot) -> Option<&Arc<LoadedModel>> {
        self.slots[slot.index()].as_ref()
    }

    /// The version a metadata or readiness question means: the pinned
    /// version, or else the live slot's, or the standby's when live is empty.
    ///
    /// # Errors
    /// [`RouteError`] naming the missing version or slot.
    pub fn described(&self, version: Option<u64>) -> Result<Arc<LoadedModel>, RouteError> {
        let pin = version.map_or(Pin::Slot(self.live), Pin::Version);
        let picked = self.pick(pin).or_else(|e| match version {
            Some(_) => Err(e),
            None => self.pick(Pin::Slot(self.live.other())).map_err(|_| e),
        })?;
        Ok(picked.model)
    }

    /// The versions loaded in the slots, live first, as the protocol writes them.
    pub fn loaded_versions(&self) -> Vec<String> {
        [self.live, self.live.other()]
            .into_iter()
            .filter_map(|s| self.slot(s))
            .map(|m| m.version_label.clone())
            .collect()
    }

    /// Picks the version for one request.
    ///
    /// Weighted picks are exact over every 100 consecutive requests: the
    /// n-th request lands at `(n * 37) mod 100`, a permutation of 0..100
    /// that interleaves the slots instead of sending runs to each.
    ///
    /// # Errors
    /// [`RouteError`] naming the version or slot that is missing.
    pub fn pick(&self, pin: Pin) -> Result<Picked, RouteError> {
        match pin {
            Pin::Slot(slot) => self
                .slot(slot)
                .cloned()
                .map(only)
                .ok_or(RouteError::EmptySlot {
                    model: self.model.clone(),
                    slot,
                }),
            Pin::Version(v) => [self.live, self.live.other()]
                .into_iter()
                .filter_map(|s| self.slot(s))
                .find(|m| m.version() == v)
                .cloned()
                .map(only)
                .ok_or(RouteError::UnknownVersion {
                    model: self.model.clone(),
                    version: v,
                }),
            Pin::Weighted => {
                let n = self.counter.fetch_add(1, Ordering::Relaxed);
                let ticket = ((n % 100) * 37 % 100) as u32;
                let slot = if ticket < self.weights.blue {
                    Slot::Blue
                } else {
                    Slot::Green
                };
                let chosen = self
                    .slot(slot)
                    .or_else(|| self.slot(slot.other()))
                    .cloned()
                    .ok_or(RouteError::EmptySlot {
                        model: self.model.clone(),
                        slot,
                    })?;
                let shadow = if self.shadow_percent > 0
                    && ((n % 100) * 73 % 100) < u64::from(self.shadow_percent)
                {
                    self.slot(chosen.slot.other()).cloned()
                } else {
                    None
                };
                Ok(Picked {
                    model: chosen,
                    shadow,
                })
            }
        }
    }
}

fn only(model: Arc<LoadedModel>) -> Picked {
    Picked {
        model,
        shadow: None,
    }
}

/// The live slot after a weight change: the heavier slot, or on a tie the
/// one that was live.
pub fn live_after(weights: Weights, previous: Slot) -> Slot {
    match weights.blue.cmp(&weights.green) {
        std::cmp::Ordering::Greater => Slot::Blue,
        std::cmp::Ordering::Less => Slot::Green,
        std::cmp::Ordering::Equal => previous,
    }
}

impl RoutingTable {
    /// A model's route.
    ///
    /// # Errors
    /// [`RouteError::UnknownModel`].
    pub fn route(&self, model: &str) -> Result<&Arc<Route>, RouteError> {
        self.routes
            .get(model)
            .ok_or_else(|| RouteError::UnknownModel(model.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ticket_sequence_is_a_permutation_of_0_to_99() {
        let mut seen: Vec<u64> = (0..100u64).map(|n| n * 37 % 100).collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..100).collect::<Vec<_>>());
        let mut seen: Vec<u64> = (0..100u64).map(|n| n * 73 % 100).collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..100).collect::<Vec<_>>());
    }

    #[test]
    fn live_follows_the_heavier_slot_and_keeps_it_on_a_tie() {
        assert_eq!(
            live_after(
                Weights {
                    blue: 10,
                    green: 90
                },
                Slot::Blue
            ),
            Slot::Green
        );
        assert_eq!(
            live_after(
                Weights {
                    blue: 50,
                    green: 50
                },
                Slot::Blue
            ),
            Slot::Blue
        );
        assert_eq!(
            live_after(
                Weights {
                    blue: 50,
                    green: 50
                },
                Slot::Green
            ),
            Slot::Green
        );
        assert_eq!(
            live_after(Weights::all_to(Slot::Blue), Slot::Green),
            Slot::Blue
        );
    }
}
