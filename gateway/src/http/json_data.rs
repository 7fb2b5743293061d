//! Decoding the `data` of an Open Inference Protocol JSON tensor straight
//! into a typed buffer: nested arrays are flattened row-major as they are
//! read, each value converted to the declared type with a range check, and
//! nothing is built in between (no `serde_json::Value`).

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, SeqAccess, Visitor};
use serde_json::value::RawValue;
use switchyard_api::DataType;

use crate::tensor::TensorData;

/// Nesting deeper than this is refused (a tensor of rank 16 is already far
/// beyond any model here), so a hostile body can't recurse without bound.
const MAX_DEPTH: usize = 16;

/// Decodes `raw` (a JSON array, possibly nested, or a scalar) as
/// `datatype`, expecting `expected` elements.
///
/// # Errors
/// A message naming the problem: a value of the wrong kind, out of range
/// for the type, or the wrong count.
pub fn decode(raw: &RawValue, datatype: DataType, expected: usize) -> Result<TensorData, String> {
    // Never trust the declared shape for the allocation: a body can only
    // hold about one element per two bytes.
    let capacity = expected.min(raw.get().len() / 2 + 1);
    let fast = match datatype {
        DataType::Fp32 => numbers::<f32>(raw.get(), capacity).map(TensorData::F32),
        DataType::Fp64 => numbers::<f64>(raw.get(), capacity).map(TensorData::F64),
        _ => None,
    };
    let data = match fast {
        Some(data) => data,
        None => with_serde(raw, datatype, capacity)?,
    };
    if data.len() != expected {
        return Err(format!(
            "{} values where the shape needs {expected}",
            data.len()
        ));
    }
    Ok(data)
}

/// A float type the fast path parses.
trait Float: lexical_core::FromLexicalWithOptions<Options = lexical_core::ParseFloatOptions> {
    fn is_finite(&self) -> bool;
}

impl Float for f32 {
    fn is_finite(&self) -> bool {
        f32::is_finite(*self)
    }
}

impl Float for f64 {
    fn is_finite(&self) -> bool {
        f64::is_finite(*self)
    }
}

/// JSON's number grammar: no leading `+`, zeros or `.`, digits after a
/// `.` and in an exponent, no NaN or infinity.
const JSON_NUMBER: u128 = lexical_core::format::JSON;

/// The fast path for floats: a number or arrays of numbers nested at
/// most [`MAX_DEPTH`] deep, the shape of nearly every FP32/FP64 body,
/// scanned in one pass, each number checked against JSON's grammar while
/// it is parsed straight to the element type (correctly rounded;
/// serde_json reads every number as f64 first, and its float parsing was
/// the largest cost of a 64-row request). `None` for anything
/// else, or a number out of range, and the serde path then decodes it or
/// names the problem.
fn numbers<T: Float>(text: &str, capacity: usize) -> Option<Vec<T>> {
    #[derive(PartialEq)]
    enum Want {
        Value,
        ValueOrClose,
        CommaOrClose,
    }
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(capacity);
    let mut i = 0;
    let mut depth = 0usize;
    let mut want = Want::Value;
    loop {
        while i < b.len() && matches!(b[i], b' ' | b'\t' | b'\n' | b'\r') {
            i += 1;
        }
        let Some(&c) = b.get(i) else {
            return (depth == 0 && want == Want::CommaOrClose).then_some(out);
        };
        match (c, &want) {
            (b'[', Want::Value | Want::ValueOrClose) if depth < MAX_DEPTH => {
                depth += 1;
                want = Want::ValueOrClose;
                i += 1;
            }
            (b']', Want::ValueOrClose | Want::CommaOrClose) if depth > 0 => {
                depth -= 1;
                want = Want::CommaOrClose;
                i += 1;
            }
            (b',', Want::CommaOrClose) if depth > 0 => {
                want = Want::Value;
                i += 1;
            }
            (b'-' | b'0'..=b'9', Want::Value | Want::ValueOrClose) => {
                let (v, used) = lexical_core::parse_partial_with_options::<T, JSON_NUMBER>(
                    &b[i..],
                    &lexical_core::ParseFloatOptions::new(),
                )
                .ok()?;
                if used == 0 || !v.is_finite() {
                    return None;
                }
                let end = i + used;
                out.push(v);
                want = Want::CommaOrClose;
                i = end;
            }
            _ => return None,
        }
    }
}

/// Any element type, through serde: also where the fast path's misfits
/// get their error message.
fn with_serde(raw: &RawValue, datatype: DataType, capacity: usize) -> Result<TensorData, String> {
    let mut de = serde_json::Deserializer::from_str(raw.get());
    macro_rules! flat {
        ($variant:ident, $t:ty) => {{
            let mut out: Vec<$t> = Vec::with_capacity(capacity);
            Flatten {
                out: &mut out,
                depth: 0,
            }
            .deserialize(&mut de)
            .map_err(|e| e.to_string())?;
            TensorData::$variant(out)
        }};
    }
    Ok(match datatype {
        DataType::Bool => flat!(Bool, bool),
        DataType::Uint8 => flat!(U8, u8),
        DataType::Uint16 => flat!(U16, u16),
        DataType::Uint32 => flat!(U32, u32),
        DataType::Uint64 => flat!(U64, u64),
        DataType::Int8 => flat!(I8, i8),
        DataType::Int16 => flat!(I16, i16),
        DataType::Int32 => flat!(I32, i32),
        DataType::Int64 => flat!(I64, i64),
        DataType::Fp32 => flat!(F32, f32),
        DataType::Fp64 => flat!(F64, f64),
    })
}

/// A JSON scalar converted to an element type.
pub trait Element: Sized {
    /// The protocol's name of the type.
    const NAME: &'static str;
    /// From a JSON integer.
    fn from_i64(v: i64) -> Option<Self>;
    /// From a JSON non-negative integer.
    fn from_u64(v: u64) -> Option<Self>;
    /// From a JSON number with a fraction or exponent.
    fn from_f64(v: f64) -> Option<Self>;
    /// From a JSON boolean.
    fn from_bool(_: bool) -> Option<Self> {
        None
    }
}

macro_rules! integer {
    ($t:ty, $name:literal) => {
        impl Element for $t {
            const NAME: &'static str = $name;
            fn from_i64(v: i64) -> Option<Self> {
                <$t>::try_from(v).ok()
            }
            fn from_u64(v: u64) -> Option<Self> {
                <$t>::try_from(v).ok()
            }
            fn from_f64(v: f64) -> Option<Self> {
                // Only integral values in range, such as 3.0 or 1e3.
                if v.fract() == 0.0 && v >= <$t>::MIN as f64 && v <= <$t>::MAX as f64 {
                    Some(v as $t)
                } else {
                    None
                }
            }
        }
    };
}

integer!(u8, "UINT8");
integer!(u16, "UINT16");
integer!(u32, "UINT32");
integer!(u64, "UINT64");
integer!(i8, "INT8");
integer!(i16, "INT16");
integer!(i32, "INT32");
integer!(i64, "INT64");

impl Element for f32 {
    const NAME: &'static str = "FP32";
    fn from_i64(v: i64) -> Option<Self> {
        Some(v as f32)
    }
    fn from_u64(v: u64) -> Option<Self> {
        Some(v as f32)
    }
    fn from_f64(v: f64) -> Option<Self> {
        let x = v as f32;
        // A finite JSON number that overflows FP32 is an error, not infinity.
        x.is_finite().then_some(x)
    }
}

impl Element for f64 {
    const NAME: &'static str = "FP64";
    fn from_i64(v: i64) -> Option<Self> {
        Some(v as f64)
    }
    fn from_u64(v: u64) -> Option<Self> {
        Some(v as f64)
    }
    fn from_f64(v: f64) -> Option<Self> {
        Some(v)
    }
}

impl Element for bool {
    const NAME: &'static str = "BOOL";
    fn from_i64(_: i64) -> Option<Self> {
        None
    }
    fn from_u64(_: u64) -> Option<Self> {
        None
    }
    fn from_f64(_: f64) -> Option<Self> {
        None
    }
    fn from_bool(v: bool) -> Option<Self> {
        Some(v)
    }
}

struct Flatten<'a, T> {
    out: &'a mut Vec<T>,
    depth: usize,
}

impl<'de, T: Element> DeserializeSeed<'de> for Flatten<'_, T> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, T: Element> Visitor<'de> for Flatten<'_, T> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} values, in arrays nested at most {MAX_DEPTH} deep",
            T::NAME
        )
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        if self.depth >= MAX_DEPTH {
            return Err(de::Error::custom(format_args!(
                "arrays nested deeper than {MAX_DEPTH}"
            )));
        }
        while seq
            .next_element_seed(Flatten {
                out: &mut *self.out,
                depth: self.depth + 1,
            })?
            .is_some()
        {}
        Ok(())
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        push(self.out, T::from_i64(v), format_args!("{v}"))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        push(self.out, T::from_u64(v), format_args!("{v}"))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        push(self.out, T::from_f64(v), format_args!("{v}"))
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        push(self.out, T::from_bool(v), format_args!("{v}"))
    }
}

fn push<T: Element, E: de::Error>(
    out: &mut Vec<T>,
    v: Option<T>,
    shown: fmt::Arguments<'_>,
) -> Result<(), E> {
    match v {
        Some(v) => {
            out.push(v);
            Ok(())
        }
        None => Err(E::custom(format_args!(
            "{shown} is not a valid {} value",
            T::NAME
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_owned()).unwrap()
    }

    #[test]
    fn nested_and_flat_arrays_decode_to_the_same_buffer() {
        let flat = decode(&raw("[1, 2.5, -3, 4]"), DataType::Fp32, 4).unwrap();
        let nested = decode(&raw("[[1, 2.5], [-3, 4]]"), DataType::Fp32, 4).unwrap();
        assert_eq!(flat, nested);
        assert_eq!(flat, TensorData::F32(vec![1.0, 2.5, -3.0, 4.0]));
        assert_eq!(
            decode(&raw("7"), DataType::Int64, 1).unwrap(),
            TensorData::I64(vec![7])
        );
        assert_eq!(
            decode(&raw("[true, false]"), DataType::Bool, 2).unwrap(),
            TensorData::Bool(vec![true, false])
        );
        assert_eq!(
            decode(&raw("[9007199254740993]"), DataType::Int64, 1).unwrap(),
            TensorData::I64(vec![9_007_199_254_740_993]),
            "64-bit integers are exact, not routed through f64"
        );
    }

    /// The serde path's answer for FP32, the reference for the fast path.
    fn slow(text: &str) -> Option<Vec<f32>> {
        match with_serde(&raw(text), DataType::Fp32, 0) {
            Ok(TensorData::F32(v)) => Some(v),
            _ => None,
        }
    }

    #[test]
    fn the_fast_path_reads_what_serde_reads_and_leaves_the_rest_to_it() {
        let taken = [
            "[1, 2.5, -3, 4]",
            " [ [ 1 ,2.5] ,\n[-3,\t4 ] ] ",
            "[[1], [2, 3], []]",
            "[]",
            "[[]]",
            "7",
            "-0.0966963991522789",
            "[1e3, 1E-3, 2.5e+2, -0, 0.0, 123456789012345678901234567890]",
        ];
        for text in taken {
            let fast = numbers::<f32>(text, 4).unwrap_or_else(|| panic!("{text}"));
            assert_eq!(Some(fast), slow(text), "{text}");
        }
        // Not JSON, or not only numbers, or out of range: the fast path
        // declines; the serde path then decodes or refuses each.
        let declined = [
            "",
            "[",
            "]",
            "[1,]",
            "[,1]",
            "[1 2]",
            "[[1]",
            "[1]]",
            "1 2",
            "01",
            "1.",
            ".5",
            "+1",
            "1e",
            "1e+",
            "-",
            "--1",
            "NaN",
            "Infinity",
            "[1, null]",
            "[true]",
            r#"["1"]"#,
            "[1e39]",
            "[1x]",
            "[{}]",
        ];
        for text in declined {
            assert!(numbers::<f32>(text, 4).is_none(), "{text}");
        }
        let deep = format!(
            "{}1{}",
            "[".repeat(MAX_DEPTH + 1),
            "]".repeat(MAX_DEPTH + 1)
        );
        assert!(numbers::<f32>(&deep, 1).is_none());
        let allowed = format!("{}1{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert_eq!(numbers::<f32>(&allowed, 1), Some(vec![1.0]));
    }

    #[test]
    fn fast_floats_are_the_values_a_client_printed() {
        // What Python's json.dumps prints for float32 data: the shortest
        // text of each value widened to f64. Both paths give back the
        // exact f32, bit for bit, across a spread of magnitudes.
        let mut x: u32 = 0x9e37_79b9;
        let mut values = Vec::new();
        let mut text = String::from("[");
        for i in 0..2000 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let v = f32::from_bits(x);
            if !v.is_finite() {
                continue;
            }
            if i > 0 {
                text.push(',');
            }
            text.push_str(&format!("{}", f64::from(v)));
            values.push(v);
        }
        text.push(']');
        let fast = numbers::<f32>(&text, values.len()).unwrap();
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&fast), bits(&values));
        assert_eq!(bits(&slow(&text).unwrap()), bits(&values));
        let f64s = numbers::<f64>(&text, values.len()).unwrap();
        assert!(f64s.iter().zip(&values).all(|(a, b)| *a == f64::from(*b)));
    }

    #[test]
    fn wrong_kinds_ranges_and_counts_are_named() {
        let e = decode(&raw(r#"[1, "x"]"#), DataType::Fp32, 2).unwrap_err();
        assert!(e.contains("FP32"), "{e}");
        let e = decode(&raw("[300]"), DataType::Uint8, 1).unwrap_err();
        assert!(e.contains("300 is not a valid UINT8"), "{e}");
        let e = decode(&raw("[1.5]"), DataType::Int32, 1).unwrap_err();
        assert!(e.contains("1.5 is not a valid INT32"), "{e}");
        let e = decode(&raw("[1e300]"), DataType::Fp32, 1).unwrap_err();
        assert!(e.contains("not a valid FP32"), "{e}");
        let e = decode(&raw("[1, 2, 3]"), DataType::Fp32, 4).unwrap_err();
        assert!(e.contains("3 values where the shape needs 4"), "{e}");
        let e = decode(&raw("[1]"), DataType::Bool, 1).unwrap_err();
        assert!(e.contains("not a valid BOOL"), "{e}");
        let deep = format!("{}1{}", "[".repeat(40), "]".repeat(40));
        let e = decode(&raw(&deep), DataType::Fp32, 1).unwrap_err();
        assert!(e.contains("nested deeper"), "{e}");
    }
}
