//! `controller profile`: the reference profile of a version that has none,
//! from its training data in a CSV or Parquet file.
//!
//! Columns are matched to the manifest's feature names. A column is
//! categorical when named with `--categorical`, or when all its values are
//! whole numbers and there are at most `max_categories` of them; otherwise
//! it gets quantile bins. The profile is written next to the model, then the
//! manifest is rewritten to name it and list its sha256, each file through
//! a synced temporary file and an atomic rename, so a crash leaves either
//! the old manifest or the new one, never half of one.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use switchyard_api::Manifest;
use switchyard_api::manifest::{MANIFEST_FILE, sha256_file};
use switchyard_api::profile::{FeatureProfile, PROFILE_FILE, PROFILE_FORMAT, Profile};

/// Why a profile could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ProfilingError {
    /// The data file could not be read or parsed.
    #[error("cannot read {path}: {message}")]
    Data {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The data does not fit the model.
    #[error("{0}")]
    Mismatch(String),
    /// The version's folder or manifest.
    #[error(transparent)]
    Manifest(#[from] switchyard_api::ManifestError),
    /// Writing the profile or the manifest failed.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// How to profile.
#[derive(Debug, Clone)]
pub struct ProfileOptions {
    /// Quantile bins per numeric feature.
    pub bins: usize,
    /// Columns to treat as categorical whatever their values.
    pub categorical: Vec<String>,
    /// Whole-number columns with at most this many values are categorical.
    pub max_categories: usize,
    /// A column holding the model's predictions on these rows (named after
    /// an output); by default a column named like the first output.
    pub prediction_column: Option<String>,
    /// Replace an existing profile.
    pub force: bool,
}

impl Default for ProfileOptions {
    fn default() -> Self {
        ProfileOptions {
            bins: 10,
            categorical: Vec::new(),
            max_categories: 20,
            prediction_column: None,
            force: false,
        }
    }
}

/// A data file, column by column.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Table {
    /// Column names, in file order.
    pub names: Vec<String>,
    /// Values per column; an empty cell or `NaN` is missing.
    pub columns: Vec<Vec<f64>>,
    /// The first cell of each column that is not a number: such a column
    /// (an id, a free-text note) may sit in the file, but cannot be profiled.
    pub not_numbers: Vec<Option<String>>,
}

impl Table {
    /// Reads a `.csv` (with a header row) or `.parquet` file.
    ///
    /// # Errors
    /// [`ProfilingError::Data`] naming the file, the row and the column.
    pub fn read(path: &Path) -> Result<Table, ProfilingError> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or_default()
            .to_ascii_lowercase();
        let data_error = |message: String| ProfilingError::Data {
            path: path.to_path_buf(),
            message,
        };
        match ext.as_str() {
            "csv" => read_csv(path).map_err(data_error),
            "parquet" | "pq" => read_parquet(path).map_err(data_error),
            _ => Err(data_error(
                "unknown format: name it .csv (with a header row) or .parquet".into(),
            )),
        }
    }

    /// A column by name: `None` when absent, `Err` naming the first cell
    /// that is not a number.
    pub fn column(&self, name: &str) -> Option<Result<&[f64], String>> {
        let i = self.names.iter().position(|n| n == name)?;
        Some(match self.not_numbers.get(i).and_then(Option::as_ref) {
            Some(bad) => Err(bad.clone()),
            None => Ok(self.columns[i].as_slice()),
        })
    }

    /// Rows in the table.
    pub fn rows(&self) -> usize {
        self.columns.first().map_or(0, Vec::len)
    }
}

fn read_csv(path: &Path) -> Result<Table, String> {
    let mut reader = csv::Reader::from_path(path).map_err(|e| e.to_string())?;
    let names: Vec<String> = reader
        .headers()
        .map_err(|e| e.to_string())?
        .iter()
        .map(|h| h.trim().to_owned())
        .collect();
    let mut columns = vec![Vec::new(); names.len()];
    let mut not_numbers = vec![None; names.len()];
    for (row, record) in reader.records().enumerate() {
        let record = record.map_err(|e| e.to_string())?;
        for (i, cell) in record.iter().enumerate().take(names.len()) {
            let cell = cell.trim();
            let v = if cell.is_empty() || cell.eq_ignore_ascii_case("nan") {
                f64::NAN
            } else if let Ok(v) = cell.parse::<f64>() {
                v
            } else {
                if not_numbers[i].is_none() {
                    not_numbers[i] = Some(format!(
                        "row {} column {:?}: {cell:?} is not a number",
                        row + 2,
                        names[i]
                    ));
                }
                f64::NAN
            };
            columns[i].push(v);
        }
    }
    Ok(Table {
        names,
        columns,
        not_numbers,
    })
}

fn read_parquet(path: &Path) -> Result<Table, String> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use parquet::record::Field;

    let file = File::open(path).map_err(|e| e.to_string())?;
    let reader = SerializedFileReader::new(file).map_err(|e| e.to_string())?;
    let schema = reader.metadata().file_metadata().schema_descr_ptr();
    let names: Vec<String> = schema
        .root_schema()
        .get_fields()
        .iter()
        .map(|f| f.name().to_owned())
        .collect();
    let mut columns = vec![Vec::new(); names.len()];
    let mut not_numbers = vec![None; names.len()];
    let rows = reader.get_row_iter(None).map_err(|e| e.to_string())?;
    for (r, row) in rows.enumerate() {
        let row = row.map_err(|e| e.to_string())?;
        for (i, (name, field)) in row.get_column_iter().enumerate().take(names.len()) {
            #[allow(clippy::cast_precision_loss)] // beyond 2^53 a bin is all the same
            let v = match field {
                Field::Null => f64::NAN,
                Field::Bool(b) => f64::from(u8::from(*b)),
                Field::Byte(x) => f64::from(*x),
                Field::Short(x) => f64::from(*x),
                Field::Int(x) => f64::from(*x),
                Field::Long(x) => *x as f64,
                Field::UByte(x) => f64::from(*x),
                Field::UShort(x) => f64::from(*x),
                Field::UInt(x) => f64::from(*x),
                Field::ULong(x) => *x as f64,
                Field::Float(x) => f64::from(*x),
                Field::Double(x) => *x,
                other => {
                    if not_numbers[i].is_none() {
                        not_numbers[i] = Some(format!(
                            "row {} column {name:?}: {other} is not a number",
                            r + 1
                        ));
                    }
                    f64::NAN
                }
            };
            columns[i].push(v);
        }
    }
    Ok(Table {
        names,
        columns,
        not_numbers,
    })
}

/// Builds the profile of a model from its training data.
///
/// # Errors
/// [`ProfilingError::Mismatch`] naming every feature the data lacks.
pub fn build(
    manifest: &Manifest,
    table: &Table,
    opts: &ProfileOptions,
    source: &str,
) -> Result<Profile, ProfilingError> {
    if table.rows() == 0 {
        return Err(ProfilingError::Mismatch(format!(
            "{source} has no rows to profile"
        )));
    }
    let mut features = Vec::new();
    let mut problems = Vec::new();
    for input in &manifest.inputs {
        if input.features.is_empty() {
            problems.push(format!(
                "input {:?} names no features in {MANIFEST_FILE}: add `features = [...]`, one name per column",
                input.name
            ));
            continue;
        }
        for (column, name) in input.features.iter().enumerate() {
            let values = match table.column(name) {
                None => {
                    problems.push(format!("feature {name:?} is not a column of {source}"));
                    continue;
                }
                Some(Err(bad)) => {
                    problems.push(format!("feature {name:?}: {bad}"));
                    continue;
                }
                Some(Ok(values)) => values,
            };
            match profile_column(name, values, opts) {
                Some(mut f) => {
                    f.input = Some(input.name.clone());
                    f.column = column;
                    features.push(f);
                }
                None => problems.push(format!("feature {name:?} has no finite value in {source}")),
            }
        }
    }
    if !problems.is_empty() {
        problems.push(format!("the file's columns: {}", table.names.join(", ")));
        return Err(ProfilingError::Mismatch(problems.join("; ")));
    }
    let prediction = prediction(manifest, table, opts)?;
    Ok(Profile {
        format: PROFILE_FORMAT,
        rows: table.rows() as u64,
        source: source.to_owned(),
        features,
        prediction,
    })
}

fn profile_column(name: &str, values: &[f64], opts: &ProfileOptions) -> Option<FeatureProfile> {
    let forced = opts.categorical.iter().any(|c| c == name);
    if forced || looks_categorical(values, opts.max_categories) {
        FeatureProfile::categorical(name, values)
    } else {
        FeatureProfile::numeric(name, values, opts.bins)
    }
}

fn looks_categorical(values: &[f64], max: usize) -> bool {
    let mut seen: Vec<f64> = Vec::new();
    for &v in values.iter().filter(|v| v.is_finite()) {
        if v.fract() != 0.0 {
            return false;
        }
        if !seen.contains(&v) {
            if seen.len() == max {
                return false;
            }
            seen.push(v);
        }
    }
    !seen.is_empty()
}

fn prediction(
    manifest: &Manifest,
    table: &Table,
    opts: &ProfileOptions,
) -> Result<Option<FeatureProfile>, ProfilingError> {
    let (column, explicit) = match &opts.prediction_column {
        Some(c) => (c.clone(), true),
        None => match manifest.outputs.first() {
            Some(o) => (o.name.clone(), false),
            None => return Ok(None),
        },
    };
    let values = match table.column(&column) {
        Some(Ok(values)) => values,
        Some(Err(bad)) => {
            return Err(ProfilingError::Mismatch(format!(
                "prediction column: {bad}"
            )));
        }
        None if explicit => {
            return Err(ProfilingError::Mismatch(format!(
                "--prediction-column {column:?} is not a column of the data"
            )));
        }
        None => return Ok(None),
    };
    let Some(output) = manifest
        .outputs
        .iter()
        .find(|o| o.name == column)
        .or_else(|| manifest.outputs.first())
    else {
        return Ok(None);
    };
    let mut p = profile_column(&column, values, opts).ok_or_else(|| {
        ProfilingError::Mismatch(format!("prediction column {column:?} has no finite value"))
    })?;
    p.output = Some(output.name.clone());
    Ok(Some(p))
}

/// Writes `profile` into the version folder `dir` and names it in the
/// manifest, with its sha256.
///
/// # Errors
/// [`ProfilingError::Mismatch`] when the version has a profile and `force`
/// is off; [`ProfilingError::Write`] on I/O errors.
pub fn install(dir: &Path, profile: &Profile, force: bool) -> Result<PathBuf, ProfilingError> {
    let mut manifest = Manifest::load(dir)?;
    if let Some(existing) = &manifest.profile
        && !force
    {
        return Err(ProfilingError::Mismatch(format!(
            "{} already has a profile ({existing}); pass --force to replace it",
            dir.display()
        )));
    }
    let mut problems = profile.validate();
    problems.extend(profile.check_against(&manifest));
    if !problems.is_empty() {
        return Err(ProfilingError::Mismatch(problems.join("; ")));
    }
    let json = serde_json::to_vec_pretty(profile).map_err(|e| ProfilingError::Write {
        path: dir.join(PROFILE_FILE),
        source: std::io::Error::other(e),
    })?;
    let profile_path = dir.join(PROFILE_FILE);
    write_atomically(&profile_path, &json)?;
    let sha = sha256_file(&profile_path).map_err(|source| ProfilingError::Write {
        path: profile_path.clone(),
        source,
    })?;
    manifest.profile = Some(PROFILE_FILE.to_owned());
    manifest.files.insert(PROFILE_FILE.to_owned(), sha);
    let text = toml::to_string(&manifest).map_err(|e| ProfilingError::Write {
        path: dir.join(MANIFEST_FILE),
        source: std::io::Error::other(e),
    })?;
    let text = format!("# profile added by `controller profile`\n{text}");
    write_atomically(&dir.join(MANIFEST_FILE), text.as_bytes())?;
    Ok(profile_path)
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), ProfilingError> {
    let err = |source| ProfilingError::Write {
        path: path.to_path_buf(),
        source,
    };
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp).map_err(err)?;
    f.write_all(bytes).map_err(err)?;
    f.sync_all().map_err(err)?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(err)?;
    if let Some(parent) = path.parent() {
        File::open(parent).and_then(|d| d.sync_all()).map_err(err)?;
    }
    Ok(())
}

/// A short summary for people: how each feature was profiled.
pub fn summary(profile: &Profile) -> HashMap<&'static str, Vec<String>> {
    let mut kinds: HashMap<&'static str, Vec<String>> = HashMap::new();
    for f in &profile.features {
        let kind = match f.kind {
            switchyard_api::profile::FeatureKind::Numeric => "numeric",
            switchyard_api::profile::FeatureKind::Categorical => "categorical",
        };
        kinds.entry(kind).or_default().push(f.name.clone());
    }
    kinds
}

#[cfg(test)]
mod tests;
