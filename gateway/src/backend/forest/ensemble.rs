//! A tree ensemble compiled for batch evaluation, with ONNX Runtime's
//! meaning of every attribute it accepts (`ai.onnx.ml` TreeEnsembleClassifier
//! and TreeEnsembleRegressor).
//!
//! Every tree lives in one node array. A leaf's two children are itself, so
//! a tree is walked in exactly as many steps as it is deep, with no branch on
//! where a row ends up: eight rows go down each tree side by side, eight
//! independent chains of loads the CPU overlaps. A tree of depth 3 is three
//! steps per row, whatever path each row takes.

use std::collections::{HashMap, HashSet};

use super::onnx::Attribute;

/// Rows walked down a tree together.
const LANES: usize = 8;

/// Deeper trees are refused: a walk costs its depth for every row.
pub(crate) const MAX_DEPTH: usize = 512;

/// Why an ensemble is refused. Each message names the attribute or tree.
pub(crate) type Refusal = String;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Leq,
    Lt,
    Gte,
    Gt,
    Eq,
    Neq,
    Leaf,
}

impl Mode {
    fn parse(s: &[u8]) -> Option<Mode> {
        Some(match s {
            b"BRANCH_LEQ" => Mode::Leq,
            b"BRANCH_LT" => Mode::Lt,
            b"BRANCH_GTE" => Mode::Gte,
            b"BRANCH_GT" => Mode::Gt,
            b"BRANCH_EQ" => Mode::Eq,
            b"BRANCH_NEQ" => Mode::Neq,
            b"LEAF" => Mode::Leaf,
            _ => return None,
        })
    }
}

/// A split or a leaf. `children[0]` is taken when the split's test holds;
/// a leaf's children are itself.
#[derive(Debug, Clone, Copy)]
struct Node {
    threshold: f32,
    feature: u32,
    children: [u32; 2],
}

/// A split's test, with whether a missing value (NaN) takes the true branch.
#[derive(Debug, Clone, Copy)]
struct Rule {
    mode: Mode,
    missing_true: bool,
}

impl Rule {
    #[inline]
    fn holds(self, x: f32, t: f32) -> bool {
        let test = match self.mode {
            Mode::Leq => x <= t,
            Mode::Lt => x < t,
            Mode::Gte => x >= t,
            Mode::Gt => x > t,
            Mode::Eq => x == t,
            Mode::Neq => x != t,
            Mode::Leaf => true,
        };
        test || (self.missing_true && x.is_nan())
    }
}

#[derive(Debug, Clone, Copy)]
struct Tree {
    root: u32,
    depth: u32,
}

/// What the leaves hold.
#[derive(Debug)]
enum Leaves {
    /// One score per leaf (a binary classifier's or a one-target regressor's),
    /// indexed by node.
    One(Vec<f32>),
    /// Per node, a span of `weights`: (class or target, weight).
    Many {
        spans: Vec<(u32, u32)>,
        weights: Vec<(u32, f32)>,
    },
}

/// What the summed scores become.
#[derive(Debug)]
pub(crate) enum Head {
    /// Two labels, one score column (scikit-learn's binary trees).
    Binary {
        labels: [i64; 2],
        base: f32,
        /// ONNX Runtime decides at 0.5 when no leaf weight is negative, at 0
        /// otherwise (before the logistic, if any).
        all_positive: bool,
        logistic: bool,
    },
    /// Three or more labels, a score per class.
    Multiclass {
        labels: Vec<i64>,
        base: Vec<f32>,
        transform: Transform,
    },
    /// A score per target.
    Regression {
        targets: usize,
        base: Vec<f32>,
        /// Divide by the number of trees (AVERAGE) or not (SUM).
        average: bool,
    },
}

/// A classifier's post transform.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transform {
    None,
    Logistic,
    Softmax,
}

/// A compiled ensemble.
#[derive(Debug)]
pub(crate) struct Ensemble {
    nodes: Vec<Node>,
    /// Per node; empty when every split is `<=` with NaN going false.
    rules: Vec<Rule>,
    trees: Vec<Tree>,
    leaves: Leaves,
    /// Input columns the splits read (the highest feature id + 1).
    pub(crate) features: usize,
    /// What the sums become.
    pub(crate) head: Head,
}

/// The answer for a batch.
#[derive(Debug, PartialEq)]
pub(crate) enum Answer {
    /// Labels and per-class scores, row-major.
    Classes { labels: Vec<i64>, scores: Vec<f32> },
    /// Per-target values, row-major.
    Values(Vec<f32>),
}

/// Attributes by name.
struct Attrs<'a>(HashMap<&'a str, &'a Attribute>);

impl<'a> Attrs<'a> {
    fn new(list: &'a [Attribute]) -> Attrs<'a> {
        Attrs(list.iter().map(|a| (a.name.as_str(), a)).collect())
    }
    fn has(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }
    fn ints(&self, name: &str) -> &'a [i64] {
        self.0.get(name).map_or(&[], |a| a.ints.as_slice())
    }
    fn floats(&self, name: &str) -> &'a [f32] {
        self.0.get(name).map_or(&[], |a| a.floats.as_slice())
    }
    fn strings(&self, name: &str) -> &'a [Vec<u8>] {
        self.0.get(name).map_or(&[], |a| a.strings.as_slice())
    }
    fn string(&self, name: &str) -> Option<&'a [u8]> {
        self.0.get(name).map(|a| a.s.as_slice())
    }
    fn int(&self, name: &str) -> Option<i64> {
        self.0.get(name).map(|a| a.i)
    }
}

/// Leaf weights as the node lists them: which tree and node, which class or
/// target, how much.
struct Weights<'a> {
    trees: &'a [i64],
    nodes: &'a [i64],
    ids: &'a [i64],
    values: &'a [f32],
}

impl Ensemble {
    /// Compiles a `TreeEnsembleClassifier`'s attributes.
    pub(crate) fn classifier(attributes: &[Attribute]) -> Result<Ensemble, Refusal> {
        let a = Attrs::new(attributes);
        refuse_tensor_forms(&a)?;
        if !a.strings("classlabels_strings").is_empty() {
            return Err("string class labels (classlabels_strings) are not served".into());
        }
        let labels = a.ints("classlabels_int64s").to_vec();
        if labels.len() < 2 {
            return Err("classlabels_int64s names fewer than two classes".into());
        }
        let weights = Weights {
            trees: a.ints("class_treeids"),
            nodes: a.ints("class_nodeids"),
            ids: a.ints("class_ids"),
            values: a.floats("class_weights"),
        };
        let base = a.floats("base_values").to_vec();
        let transform = a.string("post_transform").unwrap_or(b"NONE");
        let mut parts = Parts::read(&a)?;
        let one_column = weights.ids.iter().all(|&c| c == 0);
        let head = if labels.len() == 2 {
            if !one_column {
                // ONNX Runtime's label rule for two separately scored classes
                // is not an argmax; leave that shape to it.
                return Err(
                    "two classes with a score column each: serve this model with ort".into(),
                );
            }
            if base.len() > 1 {
                return Err(format!(
                    "base_values has {} entries for one score column",
                    base.len()
                ));
            }
            let logistic = match transform {
                b"NONE" => false,
                b"LOGISTIC" => true,
                other => {
                    return Err(format!(
                        "post_transform {} on a binary classifier: serve this model with ort",
                        String::from_utf8_lossy(other)
                    ));
                }
            };
            let all_positive = weights.values.iter().all(|&w| w >= 0.0);
            Head::Binary {
                labels: [labels[0], labels[1]],
                base: base.first().copied().unwrap_or(0.0),
                all_positive,
                logistic,
            }
        } else {
            if !base.is_empty() && base.len() != labels.len() {
                return Err(format!(
                    "base_values has {} entries for {} classes",
                    base.len(),
                    labels.len()
                ));
            }
            let transform = match transform {
                b"NONE" => Transform::None,
                b"LOGISTIC" => Transform::Logistic,
                b"SOFTMAX" => Transform::Softmax,
                other => {
                    return Err(format!(
                        "post_transform {}: serve this model with ort",
                        String::from_utf8_lossy(other)
                    ));
                }
            };
            Head::Multiclass {
                labels,
                base,
                transform,
            }
        };
        let classes = match &head {
            Head::Binary { .. } => 1,
            Head::Multiclass { labels, .. } => labels.len(),
            Head::Regression { targets, .. } => *targets,
        };
        let leaves = parts.leaves(&weights, classes, "class")?;
        if let (Head::Binary { base, .. }, Leaves::One(_)) = (&head, &leaves)
            && *base != 0.0
            && parts.bare_leaf
        {
            // ONNX Runtime adds the base to a row no leaf scored but decides
            // its label as if it had not; refuse rather than guess.
            return Err("a leaf without a weight next to a base value: serve with ort".into());
        }
        parts.finish(leaves, head)
    }

    /// Compiles a `TreeEnsembleRegressor`'s attributes.
    pub(crate) fn regressor(attributes: &[Attribute]) -> Result<Ensemble, Refusal> {
        let a = Attrs::new(attributes);
        refuse_tensor_forms(&a)?;
        let targets = a.int("n_targets").unwrap_or(1);
        let targets = usize::try_from(targets)
            .ok()
            .filter(|&t| (1..=4096).contains(&t))
            .ok_or_else(|| format!("n_targets {targets} is out of range"))?;
        let weights = Weights {
            trees: a.ints("target_treeids"),
            nodes: a.ints("target_nodeids"),
            ids: a.ints("target_ids"),
            values: a.floats("target_weights"),
        };
        let base = a.floats("base_values").to_vec();
        if !base.is_empty() && base.len() != targets {
            return Err(format!(
                "base_values has {} entries for {targets} targets",
                base.len()
            ));
        }
        match a.string("post_transform").unwrap_or(b"NONE") {
            b"NONE" => {}
            other => {
                return Err(format!(
                    "post_transform {} on a regressor: serve this model with ort",
                    String::from_utf8_lossy(other)
                ));
            }
        }
        let average = match a.string("aggregate_function").unwrap_or(b"SUM") {
            b"SUM" => false,
            b"AVERAGE" => true,
            other => {
                return Err(format!(
                    "aggregate_function {}: serve this model with ort",
                    String::from_utf8_lossy(other)
                ));
            }
        };
        let mut parts = Parts::read(&a)?;
        let leaves = parts.leaves(&weights, targets, "target")?;
        parts.finish(
            leaves,
            Head::Regression {
                targets,
                base,
                average,
            },
        )
    }

    /// Columns of output scores per row.
    pub(crate) fn columns(&self) -> usize {
        match &self.head {
            Head::Binary { .. } => 2,
            Head::Multiclass { labels, .. } => labels.len(),
            Head::Regression { targets, .. } => *targets,
        }
    }

    /// Evaluates `rows` rows of `width` columns (`width >= self.features`).
    pub(crate) fn predict(&self, input: &[f32], rows: usize, width: usize) -> Answer {
        debug_assert!(width >= self.features && input.len() == rows * width);
        match &self.leaves {
            Leaves::One(values) => {
                let mut sums = vec![0.0f32; rows];
                self.walk(input, rows, width, |row, leaf| sums[row] += values[leaf]);
                self.finish_one(sums)
            }
            Leaves::Many { spans, weights } => {
                let columns = match &self.head {
                    Head::Multiclass { labels, .. } => labels.len(),
                    Head::Regression { targets, .. } => *targets,
                    Head::Binary { .. } => 1,
                };
                let mut sums = vec![0.0f32; rows * columns];
                // Only a classifier asks which classes some leaf scored
                // (for its label); a regressor's targets are all answered.
                let track = matches!(self.head, Head::Multiclass { .. });
                let mut scored = vec![false; if track { rows * columns } else { 0 }];
                self.walk(input, rows, width, |row, leaf| {
                    let (start, len) = spans[leaf];
                    for &(id, w) in &weights[start as usize..(start + len) as usize] {
                        sums[row * columns + id as usize] += w;
                        if track {
                            scored[row * columns + id as usize] = true;
                        }
                    }
                });
                self.finish_many(sums, &scored, columns)
            }
        }
    }

    /// Calls `leaf(row, node)` for every row and tree, trees in order for
    /// each row (so sums add up in ONNX Runtime's order).
    fn walk(&self, input: &[f32], rows: usize, width: usize, leaf: impl FnMut(usize, usize)) {
        if self.rules.is_empty() {
            self.walk_with(input, rows, width, leaf, |_, x, t| x <= t);
        } else {
            let rules = &self.rules;
            self.walk_with(input, rows, width, leaf, |node, x, t| {
                rules[node].holds(x, t)
            });
        }
    }

    #[inline(always)]
    fn walk_with(
        &self,
        input: &[f32],
        rows: usize,
        width: usize,
        mut leaf: impl FnMut(usize, usize),
        holds: impl Fn(usize, f32, f32) -> bool + Copy,
    ) {
        let mut first = 0;
        while rows - first >= LANES {
            self.block::<LANES>(input, first, width, &mut leaf, holds);
            first += LANES;
        }
        // The rest one at a time: a wider block would walk rows it then
        // throws away (seven of eight for a single-row request).
        while first < rows {
            self.block::<1>(input, first, width, &mut leaf, holds);
            first += 1;
        }
    }

    /// Walks rows `first..first + N` down every tree together.
    #[inline(always)]
    fn block<const N: usize>(
        &self,
        input: &[f32],
        first: usize,
        width: usize,
        leaf: &mut impl FnMut(usize, usize),
        holds: impl Fn(usize, f32, f32) -> bool,
    ) {
        let nodes = &self.nodes;
        let rows: [&[f32]; N] =
            std::array::from_fn(|l| &input[(first + l) * width..(first + l + 1) * width]);
        for tree in &self.trees {
            let mut at = [tree.root as usize; N];
            for _ in 0..tree.depth {
                for l in 0..N {
                    let node = nodes[at[l]];
                    let x = rows[l][node.feature as usize];
                    let side = usize::from(!holds(at[l], x, node.threshold));
                    at[l] = node.children[side] as usize;
                }
            }
            for (l, &node) in at.iter().enumerate() {
                leaf(first + l, node);
            }
        }
    }

    fn finish_one(&self, sums: Vec<f32>) -> Answer {
        match &self.head {
            Head::Binary {
                labels,
                base,
                all_positive,
                logistic,
            } => {
                let mut out = Vec::with_capacity(sums.len());
                let mut scores = Vec::with_capacity(sums.len() * 2);
                for s in sums {
                    let s = s + base;
                    let positive = if *all_positive { s > 0.5 } else { s > 0.0 };
                    out.push(labels[usize::from(positive)]);
                    if *logistic {
                        scores.extend([logistic_of(-s), logistic_of(s)]);
                    } else if *all_positive {
                        scores.extend([1.0 - s, s]);
                    } else {
                        scores.extend([-s, s]);
                    }
                }
                Answer::Classes {
                    labels: out,
                    scores,
                }
            }
            Head::Regression { base, average, .. } => {
                let trees = self.trees.len() as f32;
                let base = base.first().copied().unwrap_or(0.0);
                Answer::Values(
                    sums.into_iter()
                        .map(|s| if *average { s / trees + base } else { s + base })
                        .collect(),
                )
            }
            Head::Multiclass { .. } => unreachable_head(),
        }
    }

    fn finish_many(&self, mut sums: Vec<f32>, scored: &[bool], columns: usize) -> Answer {
        match &self.head {
            Head::Multiclass {
                labels,
                base,
                transform,
            } => {
                let rows = sums.len() / columns;
                let mut out = Vec::with_capacity(rows);
                for (row, scores) in sums.chunks_exact_mut(columns).enumerate() {
                    let scored = &scored[row * columns..(row + 1) * columns];
                    let mut best: Option<(usize, f32)> = None;
                    for (k, score) in scores.iter_mut().enumerate() {
                        // A base value gives a class its score even where no
                        // leaf did.
                        let has = scored[k] || !base.is_empty();
                        if let Some(b) = base.get(k) {
                            *score += b;
                        }
                        if has && best.is_none_or(|(_, w)| *score > w) {
                            best = Some((k, *score));
                        }
                    }
                    // ONNX Runtime picks class 0 when nothing scored.
                    out.push(labels[best.map_or(0, |(k, _)| k)]);
                    match transform {
                        Transform::None => {}
                        Transform::Logistic => {
                            for s in scores.iter_mut() {
                                *s = logistic_of(*s);
                            }
                        }
                        Transform::Softmax => softmax(scores),
                    }
                }
                Answer::Classes {
                    labels: out,
                    scores: sums,
                }
            }
            Head::Regression { base, average, .. } => {
                let trees = self.trees.len() as f32;
                for row in sums.chunks_exact_mut(columns) {
                    for (k, s) in row.iter_mut().enumerate() {
                        if *average {
                            *s /= trees;
                        }
                        *s += base.get(k).copied().unwrap_or(0.0);
                    }
                }
                Answer::Values(sums)
            }
            Head::Binary { .. } => unreachable_head(),
        }
    }
}

/// The leaf layout is chosen from the head when compiling, so a head never
/// meets the other layout.
#[cold]
fn unreachable_head() -> ! {
    unreachable!("leaf layout chosen for another head")
}

fn logistic_of(x: f32) -> f32 {
    // Written on |x| so a large negative x does not overflow exp.
    let v = 1.0 / (1.0 + (-x.abs()).exp());
    if x < 0.0 { 1.0 - v } else { v }
}

fn softmax(scores: &mut [f32]) {
    let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for s in scores.iter_mut() {
        *s = (*s - max).exp();
        sum += *s;
    }
    for s in scores.iter_mut() {
        *s /= sum;
    }
}

fn refuse_tensor_forms(a: &Attrs<'_>) -> Result<(), Refusal> {
    for name in [
        "nodes_values_as_tensor",
        "nodes_hitrates_as_tensor",
        "base_values_as_tensor",
        "class_weights_as_tensor",
        "target_weights_as_tensor",
    ] {
        if a.has(name) {
            return Err(format!(
                "{name} (double-precision attributes): serve this model with ort"
            ));
        }
    }
    Ok(())
}

/// The trees read from the node attributes, before the leaves are filled.
struct Parts {
    nodes: Vec<Node>,
    rules: Vec<Rule>,
    plain: bool,
    trees: Vec<Tree>,
    leaf: Vec<bool>,
    /// (tree id, node id) → index.
    index: HashMap<(i64, i64), u32>,
    features: usize,
    /// Some leaf has no weight.
    bare_leaf: bool,
}

impl Parts {
    fn read(a: &Attrs<'_>) -> Result<Parts, Refusal> {
        let tree_ids = a.ints("nodes_treeids");
        let node_ids = a.ints("nodes_nodeids");
        let features = a.ints("nodes_featureids");
        let modes = a.strings("nodes_modes");
        let values = a.floats("nodes_values");
        let trues = a.ints("nodes_truenodeids");
        let falses = a.ints("nodes_falsenodeids");
        let missing = a.ints("nodes_missing_value_tracks_true");
        let n = tree_ids.len();
        if n == 0 {
            return Err("the ensemble has no nodes".into());
        }
        if n > u32::MAX as usize / 2 {
            return Err(format!("{n} nodes are too many"));
        }
        for (name, len) in [
            ("nodes_nodeids", node_ids.len()),
            ("nodes_featureids", features.len()),
            ("nodes_modes", modes.len()),
            ("nodes_values", values.len()),
            ("nodes_truenodeids", trues.len()),
            ("nodes_falsenodeids", falses.len()),
        ] {
            if len != n {
                return Err(format!("{name} has {len} entries, nodes_treeids {n}"));
            }
        }
        if !missing.is_empty() && missing.len() != n {
            return Err(format!(
                "nodes_missing_value_tracks_true has {} entries, nodes_treeids {n}",
                missing.len()
            ));
        }
        let mut index = HashMap::with_capacity(n);
        // Trees in the order their first node is listed, with that node.
        let mut tree_order: Vec<(i64, usize)> = Vec::new();
        let mut seen: HashSet<i64> = HashSet::new();
        for i in 0..n {
            if index.insert((tree_ids[i], node_ids[i]), i as u32).is_some() {
                return Err(format!(
                    "tree {} lists node {} twice",
                    tree_ids[i], node_ids[i]
                ));
            }
            if seen.insert(tree_ids[i]) {
                tree_order.push((tree_ids[i], i));
            }
        }
        let mut nodes = Vec::with_capacity(n);
        let mut rules = Vec::with_capacity(n);
        let mut leaf = Vec::with_capacity(n);
        let mut max_feature = 0usize;
        let mut has_parent = vec![false; n];
        for i in 0..n {
            let mode = Mode::parse(&modes[i]).ok_or_else(|| {
                format!(
                    "tree {} node {}: unknown mode {}",
                    tree_ids[i],
                    node_ids[i],
                    String::from_utf8_lossy(&modes[i])
                )
            })?;
            let missing_true = missing.get(i).is_some_and(|&m| m != 0);
            rules.push(Rule { mode, missing_true });
            leaf.push(mode == Mode::Leaf);
            if mode == Mode::Leaf {
                nodes.push(Node {
                    threshold: 0.0,
                    feature: 0,
                    children: [i as u32; 2],
                });
                continue;
            }
            let feature = usize::try_from(features[i])
                .ok()
                .filter(|&f| f < 1 << 24)
                .ok_or_else(|| {
                    format!(
                        "tree {} node {}: feature id {} is out of range",
                        tree_ids[i], node_ids[i], features[i]
                    )
                })?;
            max_feature = max_feature.max(feature);
            let child = |id: i64| -> Result<u32, Refusal> {
                let c = *index.get(&(tree_ids[i], id)).ok_or_else(|| {
                    format!(
                        "tree {} node {}: child {id} does not exist",
                        tree_ids[i], node_ids[i]
                    )
                })?;
                Ok(c)
            };
            let children = [child(trues[i])?, child(falses[i])?];
            for c in children {
                if c as usize == i {
                    return Err(format!(
                        "tree {} node {} is its own child",
                        tree_ids[i], node_ids[i]
                    ));
                }
                has_parent[c as usize] = true;
            }
            nodes.push(Node {
                threshold: values[i],
                feature: feature as u32,
                children,
            });
        }
        // Each tree: its first listed node is the root (ONNX Runtime's
        // reading) and must be the only node without a parent.
        let mut trees = Vec::with_capacity(tree_order.len());
        let mut roots: HashMap<i64, u32> = HashMap::new();
        for i in 0..n {
            if !has_parent[i] {
                if let Some(&other) = roots.get(&tree_ids[i]) {
                    return Err(format!(
                        "tree {} has two roots (nodes {} and {})",
                        tree_ids[i], node_ids[other as usize], node_ids[i]
                    ));
                }
                roots.insert(tree_ids[i], i as u32);
            }
        }
        let mut reached = vec![false; n];
        for &(t, first) in &tree_order {
            let root = *roots
                .get(&t)
                .ok_or_else(|| format!("tree {t} has no root (its nodes form a cycle)"))?;
            if root as usize != first {
                return Err(format!(
                    "tree {t}: its root, node {}, is not listed first",
                    node_ids[root as usize]
                ));
            }
            let depth = depth_of(&nodes, &leaf, root, &mut reached)
                .ok_or_else(|| format!("tree {t} is more than {MAX_DEPTH} deep or not a tree"))?;
            trees.push(Tree {
                root,
                depth: depth as u32,
            });
        }
        if let Some(i) = reached.iter().position(|r| !r) {
            return Err(format!(
                "tree {} node {} cannot be reached from its root",
                tree_ids[i], node_ids[i]
            ));
        }
        let plain = rules
            .iter()
            .all(|r| matches!(r.mode, Mode::Leq | Mode::Leaf) && !r.missing_true);
        Ok(Parts {
            nodes,
            rules,
            plain,
            trees,
            leaf,
            index,
            features: max_feature + 1,
            bare_leaf: false,
        })
    }

    fn leaves(&mut self, w: &Weights<'_>, columns: usize, what: &str) -> Result<Leaves, Refusal> {
        let n = w.trees.len();
        for (name, len) in [
            ("nodeids", w.nodes.len()),
            ("ids", w.ids.len()),
            ("weights", w.values.len()),
        ] {
            if len != n {
                return Err(format!(
                    "{what}_{name} has {len} entries, {what}_treeids {n}"
                ));
            }
        }
        let mut per_node: Vec<Vec<(u32, f32)>> = vec![Vec::new(); self.nodes.len()];
        for i in 0..n {
            let node = *self.index.get(&(w.trees[i], w.nodes[i])).ok_or_else(|| {
                format!(
                    "{what} weight {i} names tree {} node {}, which does not exist",
                    w.trees[i], w.nodes[i]
                )
            })?;
            if !self.leaf[node as usize] {
                return Err(format!(
                    "{what} weight {i} is on tree {} node {}, which is not a leaf",
                    w.trees[i], w.nodes[i]
                ));
            }
            let id = usize::try_from(w.ids[i])
                .ok()
                .filter(|&c| c < columns)
                .ok_or_else(|| format!("{what}_ids {} is out of range", w.ids[i]))?;
            per_node[node as usize].push((id as u32, w.values[i]));
        }
        self.bare_leaf = self
            .leaf
            .iter()
            .zip(&per_node)
            .any(|(&is_leaf, w)| is_leaf && w.is_empty());
        if columns == 1 {
            return Ok(Leaves::One(
                per_node
                    .iter()
                    .map(|w| w.iter().map(|&(_, v)| v).sum())
                    .collect(),
            ));
        }
        let mut spans = Vec::with_capacity(per_node.len());
        let mut weights = Vec::with_capacity(n);
        for w in per_node {
            spans.push((weights.len() as u32, w.len() as u32));
            weights.extend(w);
        }
        Ok(Leaves::Many { spans, weights })
    }

    fn finish(self, leaves: Leaves, head: Head) -> Result<Ensemble, Refusal> {
        Ok(Ensemble {
            nodes: self.nodes,
            rules: if self.plain { Vec::new() } else { self.rules },
            trees: self.trees,
            leaves,
            features: self.features,
            head,
        })
    }
}

/// The depth of the tree under `root` (splits on the longest path), marking
/// every node reached; `None` for a node reached twice (a shared child or a
/// cycle) or a tree deeper than [`MAX_DEPTH`].
fn depth_of(nodes: &[Node], leaf: &[bool], root: u32, reached: &mut [bool]) -> Option<usize> {
    let mut deepest = 0;
    let mut stack = vec![(root, 0usize)];
    while let Some((at, depth)) = stack.pop() {
        let at = at as usize;
        if reached[at] || depth > MAX_DEPTH {
            return None;
        }
        reached[at] = true;
        if leaf[at] {
            deepest = deepest.max(depth);
        } else {
            for c in nodes[at].children {
                stack.push((c, depth + 1));
            }
        }
    }
    Some(deepest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr_ints(name: &str, v: &[i64]) -> Attribute {
        Attribute {
            name: name.into(),
            ints: v.to_vec(),
            ..Attribute::default()
        }
    }
    fn attr_floats(name: &str, v: &[f32]) -> Attribute {
        Attribute {
            name: name.into(),
            floats: v.to_vec(),
            ..Attribute::default()
        }
    }
    fn attr_strings(name: &str, v: &[&str]) -> Attribute {
        Attribute {
            name: name.into(),
            strings: v.iter().map(|s| s.as_bytes().to_vec()).collect(),
            ..Attribute::default()
        }
    }
    fn attr_string(name: &str, v: &str) -> Attribute {
        Attribute {
            name: name.into(),
            s: v.as_bytes().to_vec(),
            ..Attribute::default()
        }
    }

    /// One stump on feature 1: x1 <= 0.5 → leaf 1 (weight -1), else leaf 2
    /// (weight 2); modes and missing handling as given.
    fn stump(mode: &str, missing: i64, post: &str) -> Vec<Attribute> {
        vec![
            attr_ints("nodes_treeids", &[0, 0, 0]),
            attr_ints("nodes_nodeids", &[0, 1, 2]),
            attr_ints("nodes_featureids", &[1, 0, 0]),
            attr_strings("nodes_modes", &[mode, "LEAF", "LEAF"]),
            attr_floats("nodes_values", &[0.5, 0.0, 0.0]),
            attr_ints("nodes_truenodeids", &[1, 0, 0]),
            attr_ints("nodes_falsenodeids", &[2, 0, 0]),
            attr_ints("nodes_missing_value_tracks_true", &[missing, 0, 0]),
            attr_ints("class_treeids", &[0, 0]),
            attr_ints("class_nodeids", &[1, 2]),
            attr_ints("class_ids", &[0, 0]),
            attr_floats("class_weights", &[-1.0, 2.0]),
            attr_ints("classlabels_int64s", &[7, 9]),
            attr_string("post_transform", post),
        ]
    }

    fn labels(e: &Ensemble, xs: &[f32]) -> Vec<i64> {
        let input: Vec<f32> = xs.iter().flat_map(|&x| [0.0, x]).collect();
        match e.predict(&input, xs.len(), 2) {
            Answer::Classes { labels, .. } => labels,
            Answer::Values(_) => panic!("a classifier gave values"),
        }
    }

    #[test]
    fn each_split_mode_and_missing_value_rule_sends_rows_the_right_way() {
        let nan = f32::NAN;
        let xs = [0.0, 0.5, 1.0, nan];
        for (mode, missing, want) in [
            ("BRANCH_LEQ", 0, [7, 7, 9, 9]),
            ("BRANCH_LEQ", 1, [7, 7, 9, 7]),
            ("BRANCH_LT", 0, [7, 9, 9, 9]),
            ("BRANCH_GTE", 0, [9, 7, 7, 9]),
            ("BRANCH_GT", 1, [9, 9, 7, 7]),
            ("BRANCH_EQ", 0, [9, 7, 9, 9]),
            ("BRANCH_NEQ", 0, [7, 9, 7, 7]),
        ] {
            let e = Ensemble::classifier(&stump(mode, missing, "NONE")).unwrap();
            assert_eq!(e.rules.is_empty(), mode == "BRANCH_LEQ" && missing == 0);
            assert_eq!(labels(&e, &xs), want, "{mode} missing={missing}");
        }
    }

    #[test]
    fn binary_scores_follow_onnx_runtime_for_mixed_weights() {
        let e = Ensemble::classifier(&stump("BRANCH_LEQ", 0, "LOGISTIC")).unwrap();
        let Answer::Classes { labels, scores } = e.predict(&[0.0, 1.0, 0.0, 0.0], 2, 2) else {
            panic!()
        };
        assert_eq!(labels, vec![9, 7]);
        let s = 1.0 / (1.0 + (-2.0f32).exp());
        assert!((scores[1] - s).abs() < 1e-6 && (scores[0] - (1.0 - s)).abs() < 1e-6);
        let e = Ensemble::classifier(&stump("BRANCH_LEQ", 0, "NONE")).unwrap();
        let Answer::Classes { scores, .. } = e.predict(&[0.0, 0.0], 1, 2) else {
            panic!()
        };
        assert_eq!(scores, vec![1.0, -1.0]);
    }

    #[test]
    fn malformed_trees_are_refused_naming_the_node() {
        let mut cyclic = stump("BRANCH_LEQ", 0, "NONE");
        cyclic[5] = attr_ints("nodes_truenodeids", &[0, 0, 0]);
        let e = Ensemble::classifier(&cyclic).unwrap_err();
        assert!(e.contains("own child"), "{e}");
        let mut dangling = stump("BRANCH_LEQ", 0, "NONE");
        dangling[6] = attr_ints("nodes_falsenodeids", &[5, 0, 0]);
        let e = Ensemble::classifier(&dangling).unwrap_err();
        assert!(e.contains("child 5 does not exist"), "{e}");
        let mut on_split = stump("BRANCH_LEQ", 0, "NONE");
        on_split[9] = attr_ints("class_nodeids", &[0, 2]);
        let e = Ensemble::classifier(&on_split).unwrap_err();
        assert!(e.contains("not a leaf"), "{e}");
        let mut short = stump("BRANCH_LEQ", 0, "NONE");
        short[4] = attr_floats("nodes_values", &[0.5]);
        let e = Ensemble::classifier(&short).unwrap_err();
        assert!(e.contains("nodes_values has 1 entries"), "{e}");
        let e = Ensemble::classifier(&stump("BRANCH_LEQ", 0, "PROBIT")).unwrap_err();
        assert!(e.contains("PROBIT"), "{e}");
        let mut feature = stump("BRANCH_LEQ", 0, "NONE");
        feature[2] = attr_ints("nodes_featureids", &[-3, 0, 0]);
        let e = Ensemble::classifier(&feature).unwrap_err();
        assert!(e.contains("feature id -3"), "{e}");
    }

    #[test]
    fn rows_beyond_a_lane_block_and_partial_blocks_are_all_answered() {
        let e = Ensemble::classifier(&stump("BRANCH_LEQ", 0, "NONE")).unwrap();
        for rows in [1, 7, 8, 9, 17] {
            let xs: Vec<f32> = (0..rows)
                .map(|i| if i % 3 == 0 { 1.0 } else { 0.0 })
                .collect();
            let want: Vec<i64> = xs.iter().map(|&x| if x > 0.5 { 9 } else { 7 }).collect();
            assert_eq!(labels(&e, &xs), want, "{rows} rows");
        }
    }
}
