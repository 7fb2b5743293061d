//! Tensors as the gateway moves them: a name, a shape and a typed, flat,
//! row-major buffer. Decoders build them, the batcher stacks and splits them
//! along the first (batch) dimension, backends read and write them.

use switchyard_api::DataType;

/// A typed, flat, row-major buffer.
#[derive(Debug, Clone, PartialEq)]
pub enum TensorData {
    /// BOOL.
    Bool(Vec<bool>),
    /// UINT8.
    U8(Vec<u8>),
    /// UINT16.
    U16(Vec<u16>),
    /// UINT32.
    U32(Vec<u32>),
    /// UINT64.
    U64(Vec<u64>),
    /// INT8.
    I8(Vec<i8>),
    /// INT16.
    I16(Vec<i16>),
    /// INT32.
    I32(Vec<i32>),
    /// INT64.
    I64(Vec<i64>),
    /// FP32.
    F32(Vec<f32>),
    /// FP64.
    F64(Vec<f64>),
}

/// A named tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    /// The input or output name.
    pub name: String,
    /// The shape; the first dimension is the batch.
    pub shape: Vec<usize>,
    /// The elements.
    pub data: TensorData,
}

/// Why raw bytes could not become a tensor.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{actual} bytes of {datatype} data for shape {shape:?}, which needs {expected}")]
pub struct RawLengthError {
    /// The element type.
    pub datatype: DataType,
    /// The declared shape.
    pub shape: Vec<usize>,
    /// Bytes the shape needs.
    pub expected: usize,
    /// Bytes given.
    pub actual: usize,
}

/// Runs `$body` with `$v` bound to the inner `Vec` of any variant.
macro_rules! with_vec {
    ($data:expr, $v:ident => $body:expr) => {
        match $data {
            TensorData::Bool($v) => $body,
            TensorData::U8($v) => $body,
            TensorData::U16($v) => $body,
            TensorData::U32($v) => $body,
            TensorData::U64($v) => $body,
            TensorData::I8($v) => $body,
            TensorData::I16($v) => $body,
            TensorData::I32($v) => $body,
            TensorData::I64($v) => $body,
            TensorData::F32($v) => $body,
            TensorData::F64($v) => $body,
        }
    };
}
pub(crate) use with_vec;

/// Runs `$body` with `$v` bound to the inner `Vec` of two variants of the
/// same type, or evaluates `$mismatch`.
macro_rules! with_vec_pair {
    ($a:expr, $b:expr, $x:ident, $y:ident => $body:expr, $mismatch:expr) => {
        match ($a, $b) {
            (TensorData::Bool($x), TensorData::Bool($y)) => $body,
            (TensorData::U8($x), TensorData::U8($y)) => $body,
            (TensorData::U16($x), TensorData::U16($y)) => $body,
            (TensorData::U32($x), TensorData::U32($y)) => $body,
            (TensorData::U64($x), TensorData::U64($y)) => $body,
            (TensorData::I8($x), TensorData::I8($y)) => $body,
            (TensorData::I16($x), TensorData::I16($y)) => $body,
            (TensorData::I32($x), TensorData::I32($y)) => $body,
            (TensorData::I64($x), TensorData::I64($y)) => $body,
            (TensorData::F32($x), TensorData::F32($y)) => $body,
            (TensorData::F64($x), TensorData::F64($y)) => $body,
            _ => $mismatch,
        }
    };
}

impl TensorData {
    /// The element type.
    pub fn datatype(&self) -> DataType {
        match self {
            TensorData::Bool(_) => DataType::Bool,
            TensorData::U8(_) => DataType::Uint8,
            TensorData::U16(_) => DataType::Uint16,
            TensorData::U32(_) => DataType::Uint32,
            TensorData::U64(_) => DataType::Uint64,
            TensorData::I8(_) => DataType::Int8,
            TensorData::I16(_) => DataType::Int16,
            TensorData::I32(_) => DataType::Int32,
            TensorData::I64(_) => DataType::Int64,
            TensorData::F32(_) => DataType::Fp32,
            TensorData::F64(_) => DataType::Fp64,
        }
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        with_vec!(self, v => v.len())
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// An empty buffer of a type with room for `capacity` elements.
    pub fn with_capacity(datatype: DataType, capacity: usize) -> TensorData {
        match datatype {
            DataType::Bool => TensorData::Bool(Vec::with_capacity(capacity)),
            DataType::Uint8 => TensorData::U8(Vec::with_capacity(capacity)),
            DataType::Uint16 => TensorData::U16(Vec::with_capacity(capacity)),
            DataType::Uint32 => TensorData::U32(Vec::with_capacity(capacity)),
            DataType::Uint64 => TensorData::U64(Vec::with_capacity(capacity)),
            DataType::Int8 => TensorData::I8(Vec::with_capacity(capacity)),
            DataType::Int16 => TensorData::I16(Vec::with_capacity(capacity)),
            DataType::Int32 => TensorData::I32(Vec::with_capacity(capacity)),
            DataType::Int64 => TensorData::I64(Vec::with_capacity(capacity)),
            DataType::Fp32 => TensorData::F32(Vec::with_capacity(capacity)),
            DataType::Fp64 => TensorData::F64(Vec::with_capacity(capacity)),
        }
    }

    /// Decodes little-endian raw bytes (the binary encoding of the protocol).
    ///
    /// # Errors
    /// When the byte count is not `elements * size` of the type.
    pub fn from_le_bytes(
        datatype: DataType,
        shape: &[usize],
        bytes: &[u8],
    ) -> Result<TensorData, RawLengthError> {
        let expected = shape
            .iter()
            .try_fold(datatype.size(), |acc, &d| acc.checked_mul(d));
        if expected != Some(bytes.len()) {
            return Err(RawLengthError {
                datatype,
                shape: shape.to_vec(),
                expected: expected.unwrap_or(usize::MAX),
                actual: bytes.len(),
            });
        }
        macro_rules! decode {
            ($variant:ident, $t:ty) => {
                TensorData::$variant(
                    bytes
                        .chunks_exact(size_of::<$t>())
                        .map(|c| {
                            let mut b = [0u8; size_of::<$t>()];
                            b.copy_from_slice(c);
                            <$t>::from_le_bytes(b)
                        })
                        .collect(),
                )
            };
        }
        Ok(match datatype {
            DataType::Bool => TensorData::Bool(bytes.iter().map(|&b| b != 0).collect()),
            DataType::Uint8 => TensorData::U8(bytes.to_vec()),
            DataType::Uint16 => decode!(U16, u16),
            DataType::Uint32 => decode!(U32, u32),
            DataType::Uint64 => decode!(U64, u64),
            DataType::Int8 => TensorData::I8(bytes.iter().map(|&b| b as i8).collect()),
            DataType::Int16 => decode!(I16, i16),
            DataType::Int32 => decode!(I32, i32),
            DataType::Int64 => decode!(I64, i64),
            DataType::Fp32 => decode!(F32, f32),
            DataType::Fp64 => decode!(F64, f64),
        })
    }

    /// Appends the little-endian raw bytes of every element to `out`.
    pub fn write_le_bytes(&self, out: &mut Vec<u8>) {
        out.reserve(self.len() * self.datatype().size());
        match self {
            TensorData::Bool(v) => out.extend(v.iter().map(|&b| u8::from(b))),
            TensorData::U8(v) => out.extend_from_slice(v),
            TensorData::I8(v) => out.extend(v.iter().map(|&b| b as u8)),
            TensorData::U16(v) => v
                .iter()
                .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            TensorData::U32(v) => v
                .iter()
                .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            TensorData::U64(v) => v
                .iter()
                .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            TensorData::I16(v) => v
                .iter()
                .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            TensorData::I32(v) => v
                .iter()
                .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            TensorData::I64(v) => v
                .iter()
                .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            TensorData::F32(v) => v
                .iter()
                .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            TensorData::F64(v) => v
                .iter()
                .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        }
    }

    /// Appends another buffer of the same type.
    ///
    /// # Errors
    /// When the types differ.
    pub fn extend_from(&mut self, other: &TensorData) -> Result<(), DataType> {
        let theirs = other.datatype();
        with_vec_pair!(self, other, a, b => { a.extend_from_slice(b); Ok(()) }, Err(theirs))
    }

    /// A copy of elements `start..end`.
    ///
    /// # Panics
    /// When the range is out of bounds; callers split by shapes they checked.
    pub fn slice(&self, start: usize, end: usize) -> TensorData {
        match self {
            TensorData::Bool(v) => TensorData::Bool(v[start..end].to_vec()),
            TensorData::U8(v) => TensorData::U8(v[start..end].to_vec()),
            TensorData::U16(v) => TensorData::U16(v[start..end].to_vec()),
            TensorData::U32(v) => TensorData::U32(v[start..end].to_vec()),
            TensorData::U64(v) => TensorData::U64(v[start..end].to_vec()),
            TensorData::I8(v) => TensorData::I8(v[start..end].to_vec()),
            TensorData::I16(v) => TensorData::I16(v[start..end].to_vec()),
            TensorData::I32(v) => TensorData::I32(v[start..end].to_vec()),
            TensorData::I64(v) => TensorData::I64(v[start..end].to_vec()),
            TensorData::F32(v) => TensorData::F32(v[start..end].to_vec()),
            TensorData::F64(v) => TensorData::F64(v[start..end].to_vec()),
        }
    }

    /// Every element as `f64` (exact for all but 64-bit integers beyond
    /// 2^53), for comparisons and drift.
    pub fn to_f64_lossy(&self) -> Vec<f64> {
        match self {
            TensorData::Bool(v) => v.iter().map(|&b| f64::from(u8::from(b))).collect(),
            TensorData::U8(v) => v.iter().map(|&x| f64::from(x)).collect(),
            TensorData::U16(v) => v.iter().map(|&x| f64::from(x)).collect(),
            TensorData::U32(v) => v.iter().map(|&x| f64::from(x)).collect(),
            TensorData::U64(v) => v.iter().map(|&x| x as f64).collect(),
            TensorData::I8(v) => v.iter().map(|&x| f64::from(x)).collect(),
            TensorData::I16(v) => v.iter().map(|&x| f64::from(x)).collect(),
            TensorData::I32(v) => v.iter().map(|&x| f64::from(x)).collect(),
            TensorData::I64(v) => v.iter().map(|&x| x as f64).collect(),
            TensorData::F32(v) => v.iter().map(|&x| f64::from(x)).collect(),
            TensorData::F64(v) => v.clone(),
        }
    }
}

impl Tensor {
    /// The number of rows (the first dimension), 1 for a scalar.
    pub fn rows(&self) -> usize {
        self.shape.first().copied().unwrap_or(1)
    }

    /// Elements per row.
    pub fn row_elements(&self) -> usize {
        self.shape.iter().skip(1).product()
    }

    /// The element type.
    pub fn datatype(&self) -> DataType {
        self.data.datatype()
    }

    /// The shape as the protocol writes it.
    pub fn shape_i64(&self) -> Vec<i64> {
        self.shape.iter().map(|&d| d as i64).collect()
    }
}

/// Reads what a request declares about an input — its datatype and shape —
/// and the element count the shape implies, for every front end alike.
///
/// # Errors
/// A message naming the input: an unsupported datatype, a negative
/// dimension, or a shape whose element count overflows.
pub fn declared(
    name: &str,
    datatype: &str,
    shape: &[i64],
) -> Result<(DataType, Vec<usize>, usize), String> {
    let datatype: DataType = datatype
        .parse()
        .map_err(|e| format!("input {name:?}: {e}"))?;
    let dims = shape
        .iter()
        .map(|&d| usize::try_from(d))
        .collect::<Result<Vec<usize>, _>>()
        .map_err(|_| format!("input {name:?}: shape {shape:?} has a negative dimension"))?;
    let elements = dims
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| format!("input {name:?}: shape {dims:?} is too large"))?;
    Ok((datatype, dims, elements))
}

/// Stacks the tensors of several requests along the batch dimension. All
/// parts must have the same name, type and row shape (the batcher checks
/// that with [`same_row_shape`] before it groups requests).
///
/// # Errors
/// When a part's type differs from the first's.
pub fn concat_rows(parts: &[&Tensor]) -> Result<Tensor, DataType> {
    let Some(first) = parts.first() else {
        return Err(DataType::Fp32);
    };
    let rows: usize = parts.iter().map(|t| t.rows()).sum();
    let total: usize = parts.iter().map(|t| t.data.len()).sum();
    let mut data = TensorData::with_capacity(first.datatype(), total);
    for part in parts {
        data.extend_from(&part.data)?;
    }
    let mut shape = first.shape.clone();
    if let Some(d) = shape.first_mut() {
        *d = rows;
    }
    Ok(Tensor {
        name: first.name.clone(),
        shape,
        data,
    })
}

/// Whether two tensors can be stacked: same type and same dimensions past
/// the first.
pub fn same_row_shape(a: &Tensor, b: &Tensor) -> bool {
    a.datatype() == b.datatype() && a.shape.len() == b.shape.len() && a.shape[1..] == b.shape[1..]
}

/// Cuts rows `start..start + rows` out of a batched output.
///
/// # Errors
/// When the output does not have at least `start + rows` rows.
pub fn take_rows(t: &Tensor, start: usize, rows: usize) -> Result<Tensor, String> {
    if t.shape.is_empty() || t.rows() < start + rows {
        return Err(format!(
            "output {:?} has shape {:?}, not one row per input row",
            t.name, t.shape
        ));
    }
    let per_row = t.row_elements();
    let mut shape = t.shape.clone();
    shape[0] = rows;
    Ok(Tensor {
        name: t.name.clone(),
        shape,
        data: t.data.slice(start * per_row, (start + rows) * per_row),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f32_tensor(rows: usize, cols: usize, start: f32) -> Tensor {
        Tensor {
            name: "input".into(),
            shape: vec![rows, cols],
            data: TensorData::F32((0..rows * cols).map(|i| start + i as f32).collect()),
        }
    }

    #[test]
    fn raw_bytes_round_trip_for_every_type() {
        for t in DataType::ALL {
            let data = TensorData::with_capacity(t, 0);
            let mut bytes = Vec::new();
            data.write_le_bytes(&mut bytes);
            assert_eq!(TensorData::from_le_bytes(t, &[0], &bytes).unwrap(), data);
        }
        let data = TensorData::F32(vec![1.5, -2.25, f32::MAX]);
        let mut bytes = Vec::new();
        data.write_le_bytes(&mut bytes);
        assert_eq!(bytes.len(), 12);
        assert_eq!(
            TensorData::from_le_bytes(DataType::Fp32, &[3], &bytes).unwrap(),
            data
        );
        let data = TensorData::I64(vec![-1, i64::MAX]);
        let mut bytes = Vec::new();
        data.write_le_bytes(&mut bytes);
        assert_eq!(
            TensorData::from_le_bytes(DataType::Int64, &[1, 2], &bytes).unwrap(),
            data
        );
    }

    #[test]
    fn raw_bytes_of_the_wrong_length_are_refused() {
        let err = TensorData::from_le_bytes(DataType::Fp32, &[2, 3], &[0; 20]).unwrap_err();
        assert_eq!((err.expected, err.actual), (24, 20));
        assert!(err.to_string().contains("20 bytes of FP32"), "{err}");
        let huge = TensorData::from_le_bytes(DataType::Fp64, &[usize::MAX, 2], &[]);
        assert!(huge.is_err());
    }

    #[test]
    fn concat_then_take_rows_gives_back_each_part() {
        let a = f32_tensor(1, 3, 0.0);
        let b = f32_tensor(2, 3, 100.0);
        assert!(same_row_shape(&a, &b));
        let both = concat_rows(&[&a, &b]).unwrap();
        assert_eq!(both.shape, vec![3, 3]);
        assert_eq!(take_rows(&both, 0, 1).unwrap(), a);
        assert_eq!(take_rows(&both, 1, 2).unwrap(), b);
        assert!(take_rows(&both, 2, 2).is_err());
        let other = f32_tensor(1, 4, 0.0);
        assert!(!same_row_shape(&a, &other));
    }
}
