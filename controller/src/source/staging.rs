//! Adding a fetched version to the repository: into a staging folder beside
//! the versions (`<models>/<model>/.staging-<pid>-<nanos>`, a name the
//! gateway never reads as a version), verified there, numbered, synced, then
//! moved into place with one rename — so a version folder is either complete
//! and verified or absent, whatever moment the controller dies at.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use switchyard_api::manifest::{MANIFEST_FILE, is_safe_name};
use switchyard_api::{Manifest, ManifestError};

use super::{ModelSource, Origin, Selector, SourceError, Wanted};

/// What [`import`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Imported {
    /// Where the version came from.
    #[serde(flatten)]
    pub origin: Origin,
    /// Its version number in the repository.
    pub repository_version: u64,
    /// `true` if the repository already held it (same manifest, same
    /// sha256s) and nothing was added.
    pub reused: bool,
}

const STAGING_PREFIX: &str = ".staging-";

/// Removes the staging folder unless the import got as far as the rename.
struct Staging {
    path: PathBuf,
    done: bool,
}

/// Fetches `selector` of `model` from `source` and adds it to the repository
/// at `models` as the next version number, or finds it already there.
///
/// The manifest the source gives must be valid, name `model`, and match
/// every file it lists; its `version` is replaced by the number the
/// repository gives it (the source's numbering is not the repository's),
/// and `provenance.training_run` records the origin. Call it holding the
/// model's rollout lock: it clears stale staging folders, which only a dead
/// import leaves.
///
/// # Errors
/// [`SourceError`]; the repository is then as it was.
pub async fn import<S: ModelSource>(
    source: &S,
    models: &Path,
    model: &str,
    selector: &Selector,
    say: &dyn Fn(&str),
) -> Result<Imported, SourceError> {
    if !is_safe_name(model) {
        return Err(SourceError::Config(format!(
            "model name {model:?} must be 1-64 characters of [A-Za-z0-9_.-], not starting with '.'"
        )));
    }
    if !models.is_dir() {
        return Err(SourceError::Config(format!(
            "the model repository {} is not a folder",
            models.display()
        )));
    }
    let dir = models.join(model);
    // A model new to the repository gets its folder; a failed import of it
    // leaves no empty model behind.
    let new_model = !dir.exists();
    std::fs::create_dir_all(&dir).map_err(io("create", &dir))?;
    let result = import_into(source, &dir, model, selector, say).await;
    if result.is_err() && new_model {
        let _ = std::fs::remove_dir(&dir);
    }
    result
}

async fn import_into<S: ModelSource>(
    source: &S,
    dir: &Path,
    model: &str,
    selector: &Selector,
    say: &dyn Fn(&str),
) -> Result<Imported, SourceError> {
    let wanted = Wanted {
        model: model.to_owned(),
        selector: selector.clone(),
    };
    clear_stale(dir, say);
    let mut staging = Staging::create(dir)?;
    say(&format!("fetching {wanted} from {}", source.describe()));
    let origin = source.fetch(model, selector, &staging.path).await?;
    let manifest = verified(&staging.path, model).map_err(|e| SourceError::Rejected {
        server: source.describe(),
        wanted: wanted.clone(),
        source: Box::new(relative(e, &staging.path)),
    })?;
    if let Some(version) = identical(dir, &manifest) {
        say(&format!(
            "{wanted} ({} version {}) is already version {version} of the repository",
            origin.from, origin.version
        ));
        return Ok(Imported {
            origin,
            repository_version: version,
            reused: true,
        });
    }
    let version = next_version(dir)?;
    let mut manifest = manifest;
    manifest.version = version;
    manifest.provenance.training_run = origin.training_run(&manifest.provenance.training_run);
    write_manifest(&staging.path, &manifest, &origin)?;
    sync_folder(&staging.path, &manifest)?;
    let target = dir.join(version.to_string());
    if target.exists() {
        // Only a person working in the folder under our lock gets here.
        return Err(SourceError::Repository {
            action: "add a version at",
            path: target,
            source: std::io::Error::from(std::io::ErrorKind::AlreadyExists),
        });
    }
    std::fs::rename(&staging.path, &target).map_err(io("rename the staging folder to", &target))?;
    staging.done = true;
    sync_dir(dir)?;
    say(&format!(
        "added {wanted} ({} version {}) to the repository as version {version}",
        origin.from, origin.version
    ));
    Ok(Imported {
        origin,
        repository_version: version,
        reused: false,
    })
}

impl Staging {
    fn create(dir: &Path) -> Result<Staging, SourceError> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let path = dir.join(format!("{STAGING_PREFIX}{}-{nanos}", std::process::id()));
        std::fs::create_dir(&path).map_err(io("create", &path))?;
        Ok(Staging { path, done: false })
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.done {
            // Best effort: a leftover is cleared by the next import.
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> SourceError {
    let path = path.to_owned();
    move |source| SourceError::Repository {
        action,
        path,
        source,
    }
}

/// Staging folders of imports that died (the caller holds the lock, so no
/// live import owns one).
fn clear_stale(dir: &Path, say: &dyn Fn(&str)) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        if entry
            .file_name()
            .to_string_lossy()
            .starts_with(STAGING_PREFIX)
        {
            let path = entry.path();
            match std::fs::remove_dir_all(&path) {
                Ok(()) => say(&format!("removed a dead import's {}", path.display())),
                Err(e) => say(&format!("note: cannot remove {}: {e}", path.display())),
            }
        }
    }
}

/// The staged manifest, if it is valid, names `model`, and every file it
/// lists matches its sha256.
fn verified(staging: &Path, model: &str) -> Result<Manifest, ManifestError> {
    let path = staging.join(MANIFEST_FILE);
    let manifest = Manifest::read(staging)?;
    let mut problems = manifest.validate();
    if manifest.name != model {
        problems.push(format!(
            "name {:?} is not the model being promoted, {model:?}",
            manifest.name
        ));
    }
    if !problems.is_empty() {
        return Err(ManifestError::Invalid { path, problems });
    }
    manifest.verify_files(staging)?;
    Ok(manifest)
}

/// The error with paths inside the staging folder (gone by the time anyone
/// reads the message) shortened to the file's name.
fn relative(e: ManifestError, staging: &Path) -> ManifestError {
    let short = |p: PathBuf| p.strip_prefix(staging).map(Path::to_owned).unwrap_or(p);
    match e {
        ManifestError::Read { path, source } => ManifestError::Read {
            path: short(path),
            source,
        },
        ManifestError::Parse { path, message } => ManifestError::Parse {
            path: short(path),
            message,
        },
        ManifestError::Invalid { path, problems } => ManifestError::Invalid {
            path: short(path),
            problems,
        },
        ManifestError::File { path, source } => ManifestError::File {
            path: short(path),
            source,
        },
        ManifestError::Checksum {
            path,
            expected,
            actual,
        } => ManifestError::Checksum {
            path: short(path),
            expected,
            actual,
        },
    }
}

/// Version folders of a model: every folder whose name is a number.
fn numbered(dir: &Path) -> Result<Vec<u64>, SourceError> {
    let entries = std::fs::read_dir(dir).map_err(io("read", dir))?;
    Ok(entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u64>().ok()))
        .collect())
}

/// One past the highest version folder, even one without a manifest: a
/// number once used may have been served, and is never given again.
fn next_version(dir: &Path) -> Result<u64, SourceError> {
    let highest = numbered(dir)?.into_iter().max().unwrap_or(0);
    highest
        .checked_add(1)
        .ok_or_else(|| SourceError::Config(format!("{} has no version number left", dir.display())))
}

/// The repository version that is the same model as `fetched`: every field
/// equal but the version number and the provenance, which record where a
/// copy came from, not what it is.
fn identical(dir: &Path, fetched: &Manifest) -> Option<u64> {
    let mut versions = numbered(dir).ok()?;
    versions.sort_unstable();
    let key = |m: &Manifest| Manifest {
        version: 0,
        provenance: Default::default(),
        ..m.clone()
    };
    let want = key(fetched);
    versions.into_iter().find(|v| {
        Manifest::load(&dir.join(v.to_string())).is_ok_and(|existing| key(&existing) == want)
    })
}

fn write_manifest(staging: &Path, manifest: &Manifest, origin: &Origin) -> Result<(), SourceError> {
    let path = staging.join(MANIFEST_FILE);
    let body = toml::to_string(manifest).map_err(|e| SourceError::Repository {
        action: "write",
        path: path.clone(),
        source: std::io::Error::other(e),
    })?;
    let text = format!(
        "# fetched by `controller promote --from {}` from {} (model {:?}, version {}); \
         the version number is the repository's\n{body}",
        origin.from, origin.server, origin.name, origin.version
    );
    std::fs::write(&path, text).map_err(io("write", &path))
}

/// Every file of the version and the folder itself reach the disk before the
/// rename publishes them.
fn sync_folder(staging: &Path, manifest: &Manifest) -> Result<(), SourceError> {
    let names = manifest
        .files
        .keys()
        .map(String::as_str)
        .chain([MANIFEST_FILE]);
    for name in names {
        let path = staging.join(name);
        File::open(&path)
            .and_then(|f| f.sync_all())
            .map_err(io("sync", &path))?;
    }
    sync_dir(staging)
}

fn sync_dir(dir: &Path) -> Result<(), SourceError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("sync", dir))
}

#[cfg(test)]
mod tests;
