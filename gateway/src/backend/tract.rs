//! tract, ONNX inference in pure Rust: no native library to ship. Right for
//! linear models, MLPs and CNNs.
//!
//! tract's tree-ensemble operators give wrong labels on scikit-learn's trees
//! and are 100-400x slower than ONNX Runtime (measured, docs/benchmarks.md),
//! so graphs holding them are refused here rather than served wrongly.

use std::path::Path;
use std::sync::Arc;

use switchyard_api::DataType;
use switchyard_api::manifest::{BackendKind, Manifest, TensorSpec};
use tract_onnx::prelude::Tensor as TractTensor;
use tract_onnx::prelude::*;

use super::{Backend, BackendError, GraphTensor, Session};
use crate::tensor::{Tensor, TensorData};

const NAME: &str = "tract";

/// ONNX operators tract loads but answers wrongly for scikit-learn models.
const REFUSED_OPS: [&str; 3] = [
    "TreeEnsembleClassifier",
    "TreeEnsembleRegressor",
    "TreeEnsemble",
];

/// The tract backend. Stateless: each load builds its own optimised plan.
#[derive(Debug, Default)]
pub struct TractBackend;

impl Backend for TractBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Tract
    }

    fn load(&self, model: &Path, manifest: &Manifest) -> Result<Box<dyn Session>, BackendError> {
        let load = |message: String| BackendError::Load {
            backend: NAME,
            message,
        };
        let bytes = std::fs::read(model)
            .map_err(|e| load(format!("cannot read {}: {e}", model.display())))?;
        let onnx = tract_onnx::onnx();
        let proto = onnx
            .proto_model_for_read(&mut bytes.as_slice())
            .map_err(|e| load(format!("not an ONNX model: {e:#}")))?;
        if let Some(graph) = &proto.graph
            && let Some(node) = graph
                .node
                .iter()
                .find(|n| REFUSED_OPS.contains(&n.op_type.as_str()))
        {
            return Err(BackendError::Unsupported {
                backend: NAME,
                reason: format!(
                    "operator {} gives wrong answers in tract; serve tree ensembles with ort",
                    node.op_type
                ),
            });
        }
        let mut graph = onnx
            .model_for_proto_model(&proto)
            .map_err(|e| load(format!("{e:#}")))?;
        let output_names: Vec<String> = (0..graph.outputs.len())
            .map(|i| {
                graph
                    .outlet_label(graph.outputs[i])
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect();
        let input_names: Vec<String> = (0..graph.inputs.len())
            .map(|i| graph.node(graph.inputs[i].node).name.clone())
            .collect();
        let symbols = graph.symbols.clone();
        for (i, name) in input_names.iter().enumerate() {
            // Pin each input's type and shape from the manifest, the batch
            // dimension as a symbol, so tract optimises for any batch size.
            if let Some(spec) = manifest.input(name) {
                graph
                    .set_input_fact(i, fact_for(spec, &symbols))
                    .map_err(|e| load(format!("input {name:?}: {e:#}")))?;
            }
        }
        let typed = graph.into_optimized().map_err(|e| load(format!("{e:#}")))?;
        // The graph's own signature, as tract typed it.
        let describe_all =
            |names: &[String], fact: &dyn Fn(usize) -> Option<TypedFact>| -> Vec<GraphTensor> {
                names
                    .iter()
                    .enumerate()
                    .map(|(i, n)| describe(n, fact(i).as_ref()))
                    .collect()
            };
        let inputs = describe_all(&input_names, &|i| typed.input_fact(i).ok().cloned());
        let outputs = describe_all(&output_names, &|i| typed.output_fact(i).ok().cloned());
        let plan = typed.into_runnable().map_err(|e| load(format!("{e:#}")))?;
        Ok(Box::new(TractModel {
            plan,
            inputs,
            outputs,
        }))
    }
}

struct TractModel {
    plan: Arc<TypedRunnableModel>,
    inputs: Vec<GraphTensor>,
    outputs: Vec<GraphTensor>,
}

impl Session for TractModel {
    fn inputs(&self) -> &[GraphTensor] {
        &self.inputs
    }

    fn outputs(&self) -> &[GraphTensor] {
        &self.outputs
    }

    fn run(&mut self, inputs: &[Tensor]) -> Result<Vec<Tensor>, BackendError> {
        let run = |message: String| BackendError::Run {
            backend: NAME,
            message,
        };
        let mut values = tvec![];
        for spec in &self.inputs {
            let t = inputs
                .iter()
                .find(|t| t.name == spec.name)
                .ok_or_else(|| run(format!("input {:?} was not given", spec.name)))?;
            values.push(to_tract(t).map_err(|e| run(format!("{e:#}")))?);
        }
        let results = self.plan.run(values).map_err(|e| run(format!("{e:#}")))?;
        self.outputs
            .iter()
            .zip(results.iter())
            .map(|(spec, value)| from_tract(&spec.name, value).map_err(run))
            .collect()
    }
}

fn fact_for(spec: &TensorSpec, symbols: &SymbolScope) -> InferenceFact {
    let dims: Vec<TDim> = spec
        .shape
        .iter()
        .enumerate()
        .map(|(i, &d)| {
            if d < 0 {
                TDim::Sym(symbols.sym(&format!("d{i}")))
            } else {
                TDim::Val(d)
            }
        })
        .collect();
    InferenceFact::dt_shape(datum_type(spec.datatype), dims)
}

fn datum_type(t: DataType) -> DatumType {
    match t {
        DataType::Bool => DatumType::Bool,
        DataType::Uint8 => DatumType::U8,
        DataType::Uint16 => DatumType::U16,
        DataType::Uint32 => DatumType::U32,
        DataType::Uint64 => DatumType::U64,
        DataType::Int8 => DatumType::I8,
        DataType::Int16 => DatumType::I16,
        DataType::Int32 => DatumType::I32,
        DataType::Int64 => DatumType::I64,
        DataType::Fp32 => DatumType::F32,
        DataType::Fp64 => DatumType::F64,
    }
}

fn datatype_of(t: DatumType) -> Option<DataType> {
    Some(match t {
        DatumType::Bool => DataType::Bool,
        DatumType::U8 => DataType::Uint8,
        DatumType::U16 => DataType::Uint16,
        DatumType::U32 => DataType::Uint32,
        DatumType::U64 => DataType::Uint64,
        DatumType::I8 => DataType::Int8,
        DatumType::I16 => DataType::Int16,
        DatumType::I32 => DataType::Int32,
        DatumType::I64 => DataType::Int64,
        DatumType::F32 => DataType::Fp32,
        DatumType::F64 => DataType::Fp64,
        // tract's optimiser can turn integer outputs computed from shapes
        // (an ArgMax over labels) into dimension values; they come out as
        // 64-bit integers.
        DatumType::TDim => DataType::Int64,
        _ => return None,
    })
}

fn describe(name: &str, fact: Option<&TypedFact>) -> GraphTensor {
    GraphTensor {
        name: name.to_owned(),
        datatype: fact.map_or_else(
            || Err("unknown".to_owned()),
            |f| datatype_of(f.datum_type).ok_or_else(|| format!("{:?}", f.datum_type)),
        ),
        shape: fact.map(|f| f.shape.iter().map(|d| d.to_i64().unwrap_or(-1)).collect()),
    }
}

fn to_tract(t: &Tensor) -> tract_onnx::prelude::TractResult<TValue> {
    fn make<T: Datum + Copy>(shape: &[usize], v: &[T]) -> tract_onnx::prelude::TractResult<TValue> {
        Ok(TractTensor::from_shape(shape, v)?.into_tvalue())
    }
    match &t.data {
        TensorData::Bool(v) => make(&t.shape, v),
        TensorData::U8(v) => make(&t.shape, v),
        TensorData::U16(v) => make(&t.shape, v),
        TensorData::U32(v) => make(&t.shape, v),
        TensorData::U64(v) => make(&t.shape, v),
        TensorData::I8(v) => make(&t.shape, v),
        TensorData::I16(v) => make(&t.shape, v),
        TensorData::I32(v) => make(&t.shape, v),
        TensorData::I64(v) => make(&t.shape, v),
        TensorData::F32(v) => make(&t.shape, v),
        TensorData::F64(v) => make(&t.shape, v),
    }
}

fn from_tract(name: &str, value: &TValue) -> Result<Tensor, String> {
    if value.datum_type() == DatumType::TDim {
        let ints = value
            .cast_to::<i64>()
            .map_err(|e| format!("output {name:?}: {e:#}"))?
            .into_owned()
            .into_tvalue();
        return from_tract(name, &ints);
    }
    let view = value
        .try_as_plain_ram()
        .map_err(|e| format!("output {name:?}: {e:#}"))?;
    macro_rules! take {
        ($t:ty, $variant:ident) => {
            TensorData::$variant(
                view.as_slice::<$t>()
                    .map_err(|e| format!("output {name:?}: {e:#}"))?
                    .to_vec(),
            )
        };
    }
    let data = match value.datum_type() {
        DatumType::Bool => take!(bool, Bool),
        DatumType::U8 => take!(u8, U8),
        DatumType::U16 => take!(u16, U16),
        DatumType::U32 => take!(u32, U32),
        DatumType::U64 => take!(u64, U64),
        DatumType::I8 => take!(i8, I8),
        DatumType::I16 => take!(i16, I16),
        DatumType::I32 => take!(i32, I32),
        DatumType::I64 => take!(i64, I64),
        DatumType::F32 => take!(f32, F32),
        DatumType::F64 => take!(f64, F64),
        other => {
            return Err(format!(
                "output {name:?} has type {other:?}, which switchyard does not serve"
            ));
        }
    };
    Ok(Tensor {
        name: name.to_owned(),
        shape: value.shape().to_vec(),
        data,
    })
}
