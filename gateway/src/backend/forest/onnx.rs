//! The few ONNX protobuf messages the forest backend reads: the graph's
//! nodes, their attributes and the graph's inputs and outputs. Fields not
//! declared here (initializers above all: a large network's weights) are
//! skipped by the decoder, not copied; `oneof` members are declared as
//! optional fields, which is the same wire format.

use prost::Message;

/// `onnx.ModelProto`.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct Model {
    /// The graph.
    #[prost(message, optional, tag = "7")]
    pub(crate) graph: Option<Graph>,
    /// Operator sets the graph uses.
    #[prost(message, repeated, tag = "8")]
    pub(crate) opset_import: Vec<OpsetId>,
}

/// `onnx.OperatorSetIdProto`.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct OpsetId {
    /// Empty for the default domain.
    #[prost(string, tag = "1")]
    pub(crate) domain: String,
    /// The operator set version.
    #[prost(int64, tag = "2")]
    pub(crate) version: i64,
}

/// `onnx.GraphProto`.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct Graph {
    /// Nodes, in topological order.
    #[prost(message, repeated, tag = "1")]
    pub(crate) node: Vec<Node>,
    /// Graph inputs.
    #[prost(message, repeated, tag = "11")]
    pub(crate) input: Vec<ValueInfo>,
    /// Graph outputs.
    #[prost(message, repeated, tag = "12")]
    pub(crate) output: Vec<ValueInfo>,
}

/// `onnx.NodeProto`.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct Node {
    /// Names of the values it reads.
    #[prost(string, repeated, tag = "1")]
    pub(crate) input: Vec<String>,
    /// Names of the values it writes.
    #[prost(string, repeated, tag = "2")]
    pub(crate) output: Vec<String>,
    /// The node's own name.
    #[prost(string, tag = "3")]
    pub(crate) name: String,
    /// The operator.
    #[prost(string, tag = "4")]
    pub(crate) op_type: String,
    /// Its attributes.
    #[prost(message, repeated, tag = "5")]
    pub(crate) attribute: Vec<Attribute>,
    /// The operator's domain; empty for the default one.
    #[prost(string, tag = "7")]
    pub(crate) domain: String,
}

/// `onnx.AttributeProto`, the value kinds tree ensembles use.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct Attribute {
    /// The attribute's name.
    #[prost(string, tag = "1")]
    pub(crate) name: String,
    /// A float.
    #[prost(float, tag = "2")]
    pub(crate) f: f32,
    /// An integer.
    #[prost(int64, tag = "3")]
    pub(crate) i: i64,
    /// A string.
    #[prost(bytes = "vec", tag = "4")]
    pub(crate) s: Vec<u8>,
    /// Floats.
    #[prost(float, repeated, tag = "7")]
    pub(crate) floats: Vec<f32>,
    /// Integers.
    #[prost(int64, repeated, tag = "8")]
    pub(crate) ints: Vec<i64>,
    /// Strings.
    #[prost(bytes = "vec", repeated, tag = "9")]
    pub(crate) strings: Vec<Vec<u8>>,
}

/// `onnx.ValueInfoProto`.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct ValueInfo {
    /// The value's name.
    #[prost(string, tag = "1")]
    pub(crate) name: String,
    /// Its type.
    #[prost(message, optional, tag = "2")]
    pub(crate) r#type: Option<TypeProto>,
}

/// `onnx.TypeProto`; only tensors matter here.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct TypeProto {
    /// Set when the value is a tensor.
    #[prost(message, optional, tag = "1")]
    pub(crate) tensor_type: Option<TensorType>,
}

/// `onnx.TypeProto.Tensor`.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct TensorType {
    /// `onnx.TensorProto.DataType`.
    #[prost(int32, tag = "1")]
    pub(crate) elem_type: i32,
    /// Its dimensions, when the graph says.
    #[prost(message, optional, tag = "2")]
    pub(crate) shape: Option<Shape>,
}

/// `onnx.TensorShapeProto`.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct Shape {
    /// One entry per dimension.
    #[prost(message, repeated, tag = "1")]
    pub(crate) dim: Vec<Dim>,
}

/// `onnx.TensorShapeProto.Dimension`.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct Dim {
    /// A fixed size.
    #[prost(int64, optional, tag = "1")]
    pub(crate) dim_value: Option<i64>,
    /// A named, free size.
    #[prost(string, optional, tag = "2")]
    pub(crate) dim_param: Option<String>,
}

/// ONNX's element type numbers this backend meets.
pub(crate) mod elem {
    /// FLOAT.
    pub(crate) const FLOAT: i32 = 1;
    /// INT64.
    pub(crate) const INT64: i32 = 7;
    /// DOUBLE.
    pub(crate) const DOUBLE: i32 = 11;
}
