//! Tests of `LogStorage`: appending, atomic overwrites, missing directories, links
//! planted at the output or temporary names, and the shipped configs' paths.

use std::fs;
use std::io::Write as _;

use super::super::{LogStorage, LogStorageConfig, Storage, StorageError};
use super::*;

fn config(path: Option<&std::path::Path>, overwrite: bool) -> LogStorageConfig {
    LogStorageConfig {
        output_filename: path.map(Into::into),
        overwrite,
        ..LogStorageConfig::default()
    }
}

#[test]
fn log_storage_appends() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("metrics.prom");
    let mut storage = LogStorage::new(config(Some(&path), false)).expect("config");
    storage
        .store(&[Metric::gauge("a", "A.", 1.0)])
        .expect("first store");
    storage
        .store(&[Metric::gauge("a", "A.", 2.0)])
        .expect("second store");
    let content = fs::read_to_string(&path).expect("read output");
    assert_eq!(
        content,
        "# HELP a A.\n# TYPE a gauge\na 1\n# HELP a A.\n# TYPE a gauge\na 2\n"
    );
}

#[test]
fn log_storage_overwrites_atomically_without_leftovers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("metrics.prom");
    let mut storage = LogStorage::new(config(Some(&path), true)).expect("config");
    storage
        .store(&[Metric::gauge("a", "A.", 1.0)])
        .expect("first store");
    storage
        .store(&[Metric::gauge("a", "A.", 2.0), Metric::gauge("a", "A.", 3.0)])
        .expect("second store");
    assert_eq!(
        fs::read_to_string(&path).expect("read"),
        "# HELP a A.\n# TYPE a gauge\na 2\n"
    );
    assert_eq!(storage.dropped_total(), 1);
    let names: Vec<_> = fs::read_dir(dir.path())
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(names, ["metrics.prom"]);
}

#[test]
fn log_storage_errors_name_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gone = dir.path().join("gone");
    let path = gone.join("metrics.prom");
    for overwrite in [false, true] {
        let mut storage = LogStorage::new(config(Some(&path), overwrite)).expect("config");
        // Removed under the running agent.
        fs::remove_dir_all(&gone).expect("removing the directory");
        let err = storage.store(&[]).expect_err("directory does not exist");
        let message = err.to_string();
        assert!(message.contains(&*gone.to_string_lossy()), "{message}");
        assert!(message.contains("metrics.prom"), "{message}");
    }
}

/// A fresh node has no /var/lib/owca yet: the storage creates it (and its missing
/// parents) at start, so the shipped configs work at once.
#[test]
fn log_storage_creates_a_missing_directory() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("var/lib/owca/metrics.prom");
    let mut storage = LogStorage::new(config(Some(&path), true)).expect("creating the directory");
    let mode = fs::metadata(path.parent().expect("parent"))
        .expect("the directory exists")
        .permissions()
        .mode();
    // 0755 less the umask: never more than that.
    assert_eq!(mode & 0o7022, 0, "{mode:o}");
    assert_eq!(mode & 0o700, 0o700, "{mode:o}");
    storage
        .store(&[Metric::gauge("a", "A.", 1.0)])
        .expect("store");
    assert_eq!(
        fs::read_to_string(&path).expect("read"),
        "# HELP a A.\n# TYPE a gauge\na 1\n"
    );
}

/// A directory that cannot be created fails the start with an error naming it.
#[test]
fn log_storage_names_a_directory_it_cannot_create() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("a-file");
    fs::write(&file, "").expect("write");
    let path = file.join("owca/metrics.prom");
    let err = LogStorage::new(config(Some(&path), false)).expect_err("a file is in the way");
    assert!(matches!(err, StorageError::CreateDir { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains(&format!("directory {}", file.join("owca").display())),
        "{message}"
    );
    assert!(message.contains("metrics.prom"), "{message}");
}

/// A file another user could plant where the agent (root) writes: a symbolic link at the
/// output path to a file of theirs choosing.
fn planted_link(dir: &std::path::Path, at: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let victim = dir.join("victim");
    fs::write(&victim, "precious\n").expect("write victim");
    let link = dir.join(at);
    std::os::unix::fs::symlink(&victim, &link).expect("symlink");
    (victim, link)
}

#[test]
fn log_storage_refuses_a_symlink_at_the_output_when_appending() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (victim, path) = planted_link(dir.path(), "metrics.prom");
    let mut storage = LogStorage::new(config(Some(&path), false)).expect("config");
    let err = storage
        .store(&[Metric::gauge("a", "A.", 1.0)])
        .expect_err("a symlink is not followed");
    assert!(matches!(err, StorageError::Symlink { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&*path.to_string_lossy())
            && err.to_string().contains("symbolic link"),
        "{err}"
    );
    assert_eq!(fs::read_to_string(&victim).expect("read"), "precious\n");
}

#[test]
fn log_storage_replaces_a_symlink_at_the_output_instead_of_following_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (victim, path) = planted_link(dir.path(), "metrics.prom");
    let mut storage = LogStorage::new(config(Some(&path), true)).expect("config");
    storage
        .store(&[Metric::gauge("a", "A.", 1.0)])
        .expect("store");
    assert_eq!(fs::read_to_string(&victim).expect("read"), "precious\n");
    assert!(!fs::symlink_metadata(&path).expect("stat").is_symlink());
    assert_eq!(
        fs::read_to_string(&path).expect("read"),
        "# HELP a A.\n# TYPE a gauge\na 1\n"
    );
}

/// The temporary file used to be `.metrics.prom.tmp.<pid>`, created by following a link:
/// a link planted under that name made the agent overwrite the link's target.
#[test]
fn log_storage_ignores_a_symlink_at_the_predictable_temporary_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let temp = format!(".metrics.prom.tmp.{}", std::process::id());
    let (victim, _) = planted_link(dir.path(), &temp);
    let path = dir.path().join("metrics.prom");
    let mut storage = LogStorage::new(config(Some(&path), true)).expect("config");
    for _ in 0..3 {
        storage
            .store(&[Metric::gauge("a", "A.", 1.0)])
            .expect("store");
    }
    assert_eq!(fs::read_to_string(&victim).expect("read"), "precious\n");
    assert_eq!(
        fs::read_to_string(&path).expect("read"),
        "# HELP a A.\n# TYPE a gauge\na 1\n"
    );
    let mut names: Vec<_> = fs::read_dir(dir.path())
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, [temp.as_str(), "metrics.prom", "victim"]);
}

/// Whatever name is taken (a planted link, a leftover file), the temporary file is never
/// opened through it: the next name is tried, and after a few an error names the last.
#[test]
fn temporary_file_is_created_exclusively_without_following_links() {
    use crate::storage::log_storage::create_temp;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("metrics.prom");
    let (victim, link) = planted_link(dir.path(), ".link");
    let leftover = dir.path().join(".leftover");
    fs::write(&leftover, "left over\n").expect("write");
    let fresh = dir.path().join(".fresh");
    let names = [link.clone(), leftover.clone(), fresh.clone()];
    let (mut file, temp) = create_temp(&path, names.into_iter()).expect("a free name");
    assert_eq!(temp, fresh);
    file.write_all(b"new\n").expect("write");
    assert_eq!(fs::read_to_string(&victim).expect("read"), "precious\n");
    assert_eq!(fs::read_to_string(&leftover).expect("read"), "left over\n");
    assert_eq!(fs::read_to_string(&fresh).expect("read"), "new\n");

    let err = create_temp(&path, std::iter::repeat(link.clone())).expect_err("all taken");
    assert!(err.to_string().contains(".link"), "{err}");
    assert_eq!(fs::read_to_string(&victim).expect("read"), "precious\n");
}

#[test]
fn log_storage_rejects_overwrite_of_stderr() {
    assert!(matches!(
        LogStorage::new(config(None, true)),
        Err(StorageError::OverwriteWithoutFile)
    ));
    assert!(matches!(
        LogStorage::new(config(Some("/tmp/..".as_ref()), false)),
        Err(StorageError::NotAFile { .. })
    ));
    assert!(LogStorage::new(LogStorageConfig::default()).is_ok());
}

#[test]
fn log_storage_config_from_yaml() {
    let path = std::path::Path::new("s.yaml");
    let parsed: LogStorageConfig =
        crate::config::from_str("output_filename: /tmp/owca.prom\noverwrite: true\n", path)
            .expect("valid");
    assert_eq!(parsed, config(Some("/tmp/owca.prom".as_ref()), true));
    let parsed: LogStorageConfig = crate::config::from_str("{}", path).expect("valid");
    assert_eq!(parsed, LogStorageConfig::default());
    let err = crate::config::from_str::<LogStorageConfig>("overwrite: true\nfilename: x\n", path)
        .expect_err("unknown field");
    assert!(
        err.to_string()
            .starts_with("s.yaml:2:1: filename: unknown field `filename`"),
        "{err}"
    );
}

/// The shipped configs write where only root can plant files: `/var/lib/owca` (created
/// at start when missing) or node_exporter's textfile directory, never a world-writable
/// `/tmp`.
#[test]
fn no_shipped_config_writes_into_tmp() {
    fn yaml_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in fs::read_dir(dir).expect("read_dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                yaml_files(&path, out);
            } else if path.extension().is_some_and(|e| e == "yaml") {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    yaml_files(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs"),
        &mut files,
    );
    let mut outputs = 0;
    for file in files {
        let text = fs::read_to_string(&file).expect("read");
        for line in text.lines() {
            if let Some((_, out)) = line.split_once("output_filename:") {
                let out = out.trim().trim_matches(['\'', '"']);
                outputs += 1;
                assert!(
                    out.starts_with("/var/lib/owca/")
                        || out.starts_with("/var/lib/prometheus/node-exporter/"),
                    "{}: {out}",
                    file.display()
                );
            }
        }
    }
    assert!(outputs >= 5, "{outputs} output files");
}
