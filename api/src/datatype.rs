//! The tensor element types of the Open Inference Protocol that switchyard
//! serves.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// An element type, spelled on the wire as the protocol spells it (`FP32`).
///
/// `FP16` and `BYTES` are part of the protocol but no example model needs
/// them, so a manifest or request naming them is refused with a clear error
/// rather than served half-way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "&'static str")]
pub enum DataType {
    /// One byte, 0 or 1.
    Bool,
    /// Unsigned 8-bit integer.
    Uint8,
    /// Unsigned 16-bit integer.
    Uint16,
    /// Unsigned 32-bit integer.
    Uint32,
    /// Unsigned 64-bit integer.
    Uint64,
    /// Signed 8-bit integer.
    Int8,
    /// Signed 16-bit integer.
    Int16,
    /// Signed 32-bit integer.
    Int32,
    /// Signed 64-bit integer.
    Int64,
    /// IEEE 754 single precision.
    Fp32,
    /// IEEE 754 double precision.
    Fp64,
}

/// A datatype name that is not one switchyard serves.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unsupported datatype {0:?} (supported: BOOL, UINT8..UINT64, INT8..INT64, FP32, FP64)")]
pub struct UnknownDataType(pub String);

impl DataType {
    /// Every supported datatype, for exhaustive tests.
    pub const ALL: [DataType; 11] = [
        DataType::Bool,
        DataType::Uint8,
        DataType::Uint16,
        DataType::Uint32,
        DataType::Uint64,
        DataType::Int8,
        DataType::Int16,
        DataType::Int32,
        DataType::Int64,
        DataType::Fp32,
        DataType::Fp64,
    ];

    /// The protocol's name for this type.
    pub const fn as_str(self) -> &'static str {
        match self {
            DataType::Bool => "BOOL",
            DataType::Uint8 => "UINT8",
            DataType::Uint16 => "UINT16",
            DataType::Uint32 => "UINT32",
            DataType::Uint64 => "UINT64",
            DataType::Int8 => "INT8",
            DataType::Int16 => "INT16",
            DataType::Int32 => "INT32",
            DataType::Int64 => "INT64",
            DataType::Fp32 => "FP32",
            DataType::Fp64 => "FP64",
        }
    }

    /// Bytes per element in the raw (binary) encoding.
    pub const fn size(self) -> usize {
        match self {
            DataType::Bool | DataType::Uint8 | DataType::Int8 => 1,
            DataType::Uint16 | DataType::Int16 => 2,
            DataType::Uint32 | DataType::Int32 | DataType::Fp32 => 4,
            DataType::Uint64 | DataType::Int64 | DataType::Fp64 => 8,
        }
    }
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DataType {
    type Err = UnknownDataType;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DataType::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| UnknownDataType(s.to_owned()))
    }
}

impl TryFrom<String> for DataType {
    type Error = UnknownDataType;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<DataType> for &'static str {
    fn from(t: DataType) -> Self {
        t.as_str()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_are_refused() {
        for t in DataType::ALL {
            assert_eq!(t.as_str().parse::<DataType>(), Ok(t));
        }
        let err = "FP16".parse::<DataType>().unwrap_err();
        assert!(err.to_string().contains("FP16"), "{err}");
        assert!(
            "fp32".parse::<DataType>().is_err(),
            "names are case-sensitive"
        );
    }
}
