//! The gateway's admin API, in JSON: what the controller reads and sends.
//!
//! Every mutating call is idempotent (a repeated call after a crash changes
//! nothing more), so the controller can always retry.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// One of a model's two slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Slot {
    /// The first slot; a model starts live here.
    Blue,
    /// The second slot.
    Green,
}

/// Where a version is on its way to serving.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VersionState {
    /// Files being verified and the graph loaded.
    Loading,
    /// Running warm-up inferences at every batch size.
    Warming,
    /// Routable.
    Ready,
    /// Refused; `error` says why.
    Failed,
}

/// The routing of one model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RouteView {
    /// The model.
    pub model: String,
    /// The slot that takes traffic by default (the one with the larger
    /// weight; on a tie, the one that had it before).
    pub live: Slot,
    /// The blue slot's version, if any.
    pub blue: Option<SlotView>,
    /// The green slot's version, if any.
    pub green: Option<SlotView>,
    /// Traffic weights in percent; they add up to 100.
    pub weights: Weights,
    /// Percent of live requests mirrored to the standby slot.
    pub shadow_percent: u32,
}

/// What sits in a slot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotView {
    /// The version.
    pub version: u64,
    /// Its state.
    pub state: VersionState,
    /// Why it failed, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The backend running it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
}

/// Traffic weights of the two slots, in percent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Weights {
    /// The blue slot's share.
    pub blue: u32,
    /// The green slot's share.
    pub green: u32,
}

/// `PUT /admin/models/{model}/slots/{slot}`: load a version into a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadRequest {
    /// The version to load from the repository.
    pub version: u64,
}

/// `PUT /admin/models/{model}/shadow`: mirror live traffic to the standby.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShadowRequest {
    /// Percent of live requests to mirror, 0 to 100.
    pub percent: u32,
}

/// `GET /admin/info`: where a gateway's other listeners are, so a
/// controller given only admin URLs can reach inference and metrics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayInfo {
    /// The gateway's version.
    pub version: String,
    /// The HTTP inference listener, as bound (e.g. `0.0.0.0:8000`).
    pub http: String,
    /// The gRPC listener.
    pub grpc: String,
    /// The metrics listener.
    pub metrics: String,
}

/// `PUT /admin/models/{model}/rollout`: what the controller is doing with
/// a model, so the gateway exports it to Prometheus while it happens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolloutAnnotation {
    /// The rollout's id.
    pub id: String,
    /// Its phase (`loading`, `smoke_testing`, `baking`, `promoted`, …).
    pub phase: String,
    /// The current step (1-based; 0 before the first).
    pub step: u32,
    /// Steps in all.
    pub steps: u32,
    /// The version being rolled out.
    pub to_version: u64,
    /// The latest analysis.
    #[serde(default)]
    pub checks: Vec<CheckValue>,
}

/// One analysis check's numbers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckValue {
    /// The check (`error_rate`, `p99_latency_ms`, `shadow_agreement`).
    pub name: String,
    /// What was measured, if anything.
    pub value: Option<f64>,
    /// Its threshold.
    pub threshold: f64,
    /// `pass`, `fail` or `inconclusive`.
    pub verdict: String,
}

/// The phases a rollout annotation may name (a bounded label set).
pub const ROLLOUT_PHASES: [&str; 11] = [
    "pending",
    "loading",
    "smoke_testing",
    "shadowing",
    "shifting",
    "baking",
    "paused",
    "rolling_back",
    "promoted",
    "rolled_back",
    "aborted",
];

/// The body of every admin error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What went wrong, naming the model, slot or field.
    pub error: String,
}

impl Slot {
    /// The other slot.
    pub const fn other(self) -> Slot {
        match self {
            Slot::Blue => Slot::Green,
            Slot::Green => Slot::Blue,
        }
    }

    /// The lower-case name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Slot::Blue => "blue",
            Slot::Green => "green",
        }
    }

    /// 0 for blue, 1 for green: an index into per-slot arrays.
    pub const fn index(self) -> usize {
        match self {
            Slot::Blue => 0,
            Slot::Green => 1,
        }
    }
}

impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Slot {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "blue" => Ok(Slot::Blue),
            "green" => Ok(Slot::Green),
            other => Err(format!(
                "unknown slot {other:?} (expected \"blue\" or \"green\")"
            )),
        }
    }
}

impl Weights {
    /// All traffic to one slot.
    pub const fn all_to(slot: Slot) -> Weights {
        match slot {
            Slot::Blue => Weights {
                blue: 100,
                green: 0,
            },
            Slot::Green => Weights {
                blue: 0,
                green: 100,
            },
        }
    }

    /// The weight of one slot.
    pub const fn of(self, slot: Slot) -> u32 {
        match slot {
            Slot::Blue => self.blue,
            Slot::Green => self.green,
        }
    }

    /// Checks that the weights add up to 100.
    ///
    /// # Errors
    /// A message with both numbers.
    pub fn check(self) -> Result<(), String> {
        if self.blue.checked_add(self.green) == Some(100) {
            Ok(())
        } else {
            Err(format!(
                "weights must add up to 100, got blue {} + green {}",
                self.blue, self.green
            ))
        }
    }
}

impl VersionState {
    /// The lower-case name.
    pub const fn as_str(self) -> &'static str {
        match self {
            VersionState::Loading => "loading",
            VersionState::Warming => "warming",
            VersionState::Ready => "ready",
            VersionState::Failed => "failed",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_must_add_up_to_100() {
        assert!(
            Weights {
                blue: 90,
                green: 10
            }
            .check()
            .is_ok()
        );
        let err = Weights {
            blue: 90,
            green: 20,
        }
        .check()
        .unwrap_err();
        assert!(err.contains("blue 90 + green 20"), "{err}");
        assert!(
            Weights {
                blue: u32::MAX,
                green: 101
            }
            .check()
            .is_err()
        );
    }

    #[test]
    fn slots_parse_and_flip() {
        assert_eq!("green".parse::<Slot>(), Ok(Slot::Green));
        assert_eq!(Slot::Green.other(), Slot::Blue);
        assert!("purple".parse::<Slot>().unwrap_err().contains("purple"));
        let json = serde_json::to_string(&Weights::all_to(Slot::Green)).unwrap();
        assert_eq!(json, r#"{"blue":0,"green":100}"#);
    }
}
