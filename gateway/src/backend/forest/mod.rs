//! forest: tree ensembles evaluated natively, the way Triton's FIL backend
//! serves them beside ONNX Runtime.
//!
//! It serves one kind of graph: a single `ai.onnx.ml` TreeEnsembleClassifier
//! or TreeEnsembleRegressor reading one FP32 input, with Identity nodes
//! renaming its outputs at most (what skl2onnx, onnxmltools and hummingbird's
//! tree exports look like). Anything else, and any attribute whose ONNX
//! Runtime meaning it does not reproduce, is refused with the reason, so the
//! next backend in the order (ort) takes the model. Its answers are ONNX
//! Runtime's: the same tests (golden outputs, random rows against ort) hold
//! it to labels exactly and scores within 1e-5.
//!
//! It runs on the calling inference thread only: one call, one thread, inside
//! the gateway's thread budget.

mod ensemble;
mod onnx;

use std::path::Path;

use prost::Message;
use switchyard_api::DataType;
use switchyard_api::manifest::{BackendKind, Manifest};

use self::ensemble::{Answer, Ensemble};
use self::onnx::{Graph, ValueInfo, elem};
use super::{Backend, BackendError, GraphTensor, Session};
use crate::tensor::{Tensor, TensorData};

const NAME: &str = "forest";

/// The forest backend.
#[derive(Debug, Default)]
pub struct ForestBackend;

impl Backend for ForestBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Forest
    }

    fn load(&self, model: &Path, _manifest: &Manifest) -> Result<Box<dyn Session>, BackendError> {
        let bytes = std::fs::read(model).map_err(|e| BackendError::Load {
            backend: NAME,
            message: format!("cannot read {}: {e}", model.display()),
        })?;
        let proto = onnx::Model::decode(bytes.as_slice()).map_err(|e| BackendError::Load {
            backend: NAME,
            message: format!("not an ONNX model: {e}"),
        })?;
        let graph = proto.graph.ok_or_else(|| BackendError::Load {
            backend: NAME,
            message: "the file holds no graph".into(),
        })?;
        let forest = Forest::from_graph(&graph).map_err(|reason| BackendError::Unsupported {
            backend: NAME,
            reason,
        })?;
        Ok(Box::new(forest))
    }
}

/// Which tree-node output a graph output is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Produces {
    /// A classifier's labels, or a regressor's values.
    First,
    /// A classifier's scores.
    Second,
}

/// A loaded ensemble.
#[derive(Debug)]
struct Forest {
    ensemble: Ensemble,
    input: GraphTensor,
    /// The input's column count when the graph fixes it.
    width: Option<usize>,
    inputs: Vec<GraphTensor>,
    outputs: Vec<GraphTensor>,
    produces: Vec<Produces>,
}

impl Forest {
    fn from_graph(graph: &Graph) -> Result<Forest, String> {
        let mut trees = graph
            .node
            .iter()
            .filter(|n| n.op_type != "Identity" || !n.domain.is_empty());
        let node = trees
            .next()
            .ok_or_else(|| "the graph has no tree ensemble".to_owned())?;
        if !matches!(
            node.op_type.as_str(),
            "TreeEnsembleClassifier" | "TreeEnsembleRegressor"
        ) {
            return Err(format!(
                "operator {} is not a tree ensemble; forest serves graphs of one \
                 TreeEnsembleClassifier or TreeEnsembleRegressor",
                node.op_type
            ));
        }
        if let Some(other) = trees.next() {
            return Err(format!(
                "the graph has more than one operator ({} and {}); forest serves a single tree ensemble",
                node.op_type, other.op_type
            ));
        }
        if node.domain != "ai.onnx.ml" {
            return Err(format!(
                "operator {} (domain {:?}) is not a tree ensemble",
                node.op_type, node.domain
            ));
        }
        let classifier = node.op_type == "TreeEnsembleClassifier";
        let ensemble = if classifier {
            Ensemble::classifier(&node.attribute)?
        } else {
            Ensemble::regressor(&node.attribute)?
        };
        let [input] = graph.input.as_slice() else {
            return Err(format!(
                "the graph has {} inputs; a tree ensemble reads one",
                graph.input.len()
            ));
        };
        if node.input.first() != Some(&input.name) {
            return Err(format!(
                "the tree ensemble does not read the graph input {:?}",
                input.name
            ));
        }
        let input_tensor = describe(input);
        if input_tensor.datatype != Ok(DataType::Fp32) {
            return Err(format!(
                "input {:?} is not FP32; forest reads FP32 features",
                input.name
            ));
        }
        let width = match input_tensor.shape.as_deref() {
            Some([_, w]) if *w >= 0 => Some(*w as usize),
            Some([_, _]) | None => None,
            Some(other) => {
                return Err(format!(
                    "input {:?} has shape {other:?}; forest reads [batch, features]",
                    input.name
                ));
            }
        };
        if let Some(w) = width
            && w < ensemble.features
        {
            return Err(format!(
                "the trees read feature {} but input {:?} has {w} columns",
                ensemble.features - 1,
                input.name
            ));
        }
        // Follow Identity renames from the tree node's outputs.
        let mut source: std::collections::HashMap<&str, Produces> = node
            .output
            .iter()
            .zip([Produces::First, Produces::Second])
            .filter(|(name, _)| !name.is_empty())
            .map(|(name, p)| (name.as_str(), p))
            .collect();
        for n in graph.node.iter().filter(|n| n.op_type == "Identity") {
            let (Some(from), Some(to)) = (n.input.first(), n.output.first()) else {
                return Err("an Identity node without an input or output".into());
            };
            let p = *source.get(from.as_str()).ok_or_else(|| {
                format!("Identity reads {from:?}, which the tree ensemble does not write")
            })?;
            source.insert(to.as_str(), p);
        }
        if !classifier && graph.output.len() != 1 {
            return Err(format!(
                "a regressor graph with {} outputs",
                graph.output.len()
            ));
        }
        let mut produces = Vec::with_capacity(graph.output.len());
        for out in &graph.output {
            let p = *source.get(out.name.as_str()).ok_or_else(|| {
                format!("output {:?} is not written by the tree ensemble", out.name)
            })?;
            let want = match (classifier, p) {
                (true, Produces::First) => DataType::Int64,
                _ => DataType::Fp32,
            };
            let described = describe(out);
            if described.datatype != Ok(want) {
                return Err(format!(
                    "output {:?} is declared {:?}, the tree ensemble writes {want:?}",
                    out.name, described.datatype
                ));
            }
            if produces.contains(&p) {
                return Err(format!(
                    "output {:?} repeats another output of the tree ensemble",
                    out.name
                ));
            }
            produces.push(p);
        }
        let outputs = graph.output.iter().map(describe).collect();
        Ok(Forest {
            ensemble,
            inputs: vec![input_tensor.clone()],
            input: input_tensor,
            width,
            outputs,
            produces,
        })
    }
}

fn describe(value: &ValueInfo) -> GraphTensor {
    let tensor = value.r#type.as_ref().and_then(|t| t.tensor_type.as_ref());
    let datatype = match tensor.map(|t| t.elem_type) {
        Some(elem::FLOAT) => Ok(DataType::Fp32),
        Some(elem::INT64) => Ok(DataType::Int64),
        Some(elem::DOUBLE) => Ok(DataType::Fp64),
        Some(other) => Err(format!("ONNX element type {other}")),
        None => Err("not a tensor".to_owned()),
    };
    let shape = tensor.and_then(|t| t.shape.as_ref()).map(|s| {
        s.dim
            .iter()
            .map(|d| d.dim_value.filter(|&v| v >= 0).unwrap_or(-1))
            .collect()
    });
    GraphTensor {
        name: value.name.clone(),
        datatype,
        shape,
    }
}

impl Session for Forest {
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
        let name = &self.input.name;
        let t = inputs
            .iter()
            .find(|t| &t.name == name)
            .ok_or_else(|| run(format!("input {name:?} was not given")))?;
        let TensorData::F32(data) = &t.data else {
            return Err(run(format!("input {name:?} is not FP32")));
        };
        let &[rows, width] = t.shape.as_slice() else {
            return Err(run(format!(
                "input {name:?} has shape {:?}, not [batch, features]",
                t.shape
            )));
        };
        if self.width.is_some_and(|w| w != width)
            || width < self.ensemble.features
            || data.len() != rows * width
        {
            return Err(run(format!(
                "input {name:?} has shape {:?} and {} values; the trees read {} columns",
                t.shape,
                data.len(),
                self.width.unwrap_or(self.ensemble.features)
            )));
        }
        let columns = self.ensemble.columns();
        let answer = self.ensemble.predict(data, rows, width);
        let (mut first, mut second) = match answer {
            Answer::Classes { labels, scores } => (
                Some((vec![rows], TensorData::I64(labels))),
                Some((vec![rows, columns], TensorData::F32(scores))),
            ),
            Answer::Values(values) => (Some((vec![rows, columns], TensorData::F32(values))), None),
        };
        self.outputs
            .iter()
            .zip(&self.produces)
            .map(|(spec, p)| {
                let slot = match p {
                    Produces::First => &mut first,
                    Produces::Second => &mut second,
                };
                // Each kind appears once (checked at load).
                let (shape, data) = slot
                    .take()
                    .ok_or_else(|| run(format!("output {:?} has no value", spec.name)))?;
                Ok(Tensor {
                    name: spec.name.clone(),
                    shape,
                    data,
                })
            })
            .collect()
    }
}
