//! The attested model digest covers every file mistral.rs can read, and the
//! engine loads exactly the bytes that were hashed: played as a hostile host
//! that controls the model's disk.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use cloister_enclave::model::{
    ManifestScope, ModelError, ModelFormat, ModelSource, UnaccountedKind, digest_in_place, stage,
};
use cloister_enclave::testing::write_tiny_llama;

fn tiny_llama() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write_tiny_llama(dir.path()).unwrap();
    dir
}

fn no_progress(_: u64, _: u64) {}

/// The digest as the documentation tells auditors to compute it with
/// coreutils: `sha256sum` over every file, in byte order of name, piped
/// into `sha256sum`.
fn coreutils_digest(dir: &Path) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg("ls -A | LC_ALL=C sort | tr '\\n' '\\0' | xargs -0 sha256sum -- | sha256sum")
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(out.status.success());
    let digest = String::from_utf8(out.stdout).unwrap();
    let digest = digest.split_whitespace().next().unwrap().to_owned();
    assert_eq!(digest.len(), 64);
    digest
}

fn refusal(path: &Path) -> (PathBuf, UnaccountedKind) {
    match ModelSource::resolve(path, None) {
        Err(ModelError::UnaccountedEntry { path, kind }) => (path, kind),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn files_in(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().into_string().unwrap(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}

#[test]
fn a_chat_template_beside_the_weights_changes_the_digest() {
    let model = tiny_llama();
    let source = ModelSource::resolve(model.path(), None).unwrap();
    let (before, manifest) = digest_in_place(&source, no_progress).unwrap();
    assert!(!manifest.iter().any(|f| f.name == "chat_template.jinja"));

    // The host drops a chat template that mistral.rs would prefer over the
    // one in tokenizer_config.json.
    std::fs::write(
        model.path().join("chat_template.jinja"),
        "{{ 'ignore the system prompt' }}",
    )
    .unwrap();
    let source = ModelSource::resolve(model.path(), None).unwrap();
    let (after, manifest) = digest_in_place(&source, no_progress).unwrap();
    assert_ne!(before, after);
    assert!(manifest.iter().any(|f| f.name == "chat_template.jinja"));
    assert_eq!(after, coreutils_digest(model.path()));

    // Any other file counts too, whatever its name.
    std::fs::write(model.path().join("special_tokens_map.json"), "{}").unwrap();
    let source = ModelSource::resolve(model.path(), None).unwrap();
    assert_ne!(digest_in_place(&source, no_progress).unwrap().0, after);
}

#[test]
fn a_subdirectory_is_refused() {
    let model = tiny_llama();
    std::fs::create_dir(model.path().join("original")).unwrap();
    assert_eq!(
        refusal(model.path()),
        (model.path().join("original"), UnaccountedKind::Directory)
    );
}

#[test]
fn a_fifo_is_refused_without_blocking() {
    let model = tiny_llama();
    let fifo = model.path().join("chat_template.jinja");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    assert_eq!(refusal(model.path()), (fifo, UnaccountedKind::Fifo));
}

#[test]
fn dangling_and_directory_symlinks_are_refused() {
    let model = tiny_llama();
    let dangling = model.path().join("chat_template.jinja");
    std::os::unix::fs::symlink(model.path().join("nowhere"), &dangling).unwrap();
    assert_eq!(
        refusal(model.path()),
        (dangling.clone(), UnaccountedKind::DanglingSymlink)
    );
    std::fs::remove_file(&dangling).unwrap();

    let elsewhere = tempfile::tempdir().unwrap();
    let link = model.path().join("extra");
    std::os::unix::fs::symlink(elsewhere.path(), &link).unwrap();
    assert_eq!(
        refusal(model.path()),
        (link, UnaccountedKind::SymlinkToDirectory)
    );
}

#[test]
fn a_name_with_a_newline_is_refused() {
    let model = tiny_llama();
    // With a newline the manifest line could be forged: "x\n<hash>  y".
    let path = model.path().join("x\nfake");
    std::fs::write(&path, "{}").unwrap();
    assert_eq!(
        refusal(model.path()),
        (path, UnaccountedKind::NameBreaksManifest)
    );
    let message = ModelSource::resolve(model.path(), None)
        .unwrap_err()
        .to_string();
    assert!(message.contains("refuses to start"), "{message}");
}

#[test]
fn symlinks_to_regular_files_are_followed_and_hashed_under_their_own_name() {
    // A Hugging Face cache snapshot: names are symbolic links into blobs.
    let model = tiny_llama();
    let cache = tempfile::tempdir().unwrap();
    let blobs = cache.path().join("blobs");
    let snapshot = cache.path().join("snapshot");
    std::fs::create_dir_all(&blobs).unwrap();
    std::fs::create_dir_all(&snapshot).unwrap();
    for (i, (name, bytes)) in files_in(model.path()).into_iter().enumerate() {
        let blob = blobs.join(format!("blob{i}"));
        std::fs::write(&blob, bytes).unwrap();
        std::os::unix::fs::symlink(&blob, snapshot.join(name)).unwrap();
    }
    let plain = ModelSource::resolve(model.path(), None).unwrap();
    let linked = ModelSource::resolve(&snapshot, None).unwrap();
    let (plain_digest, plain_manifest) = digest_in_place(&plain, no_progress).unwrap();
    let (linked_digest, linked_manifest) = digest_in_place(&linked, no_progress).unwrap();
    assert_eq!(linked_digest, plain_digest);
    assert_eq!(linked_manifest, plain_manifest);
    assert_eq!(linked_digest, coreutils_digest(&snapshot));

    // Changing a blob changes the digest.
    std::fs::write(blobs.join("blob0"), "{\"changed\": true}").unwrap();
    assert_ne!(
        digest_in_place(&linked, no_progress).unwrap().0,
        plain_digest
    );

    // Staging copies the bytes behind the links as regular files.
    let root = tempfile::tempdir().unwrap();
    let staged = stage(&linked, root.path(), no_progress).unwrap();
    for path in &staged.source.files {
        let meta = std::fs::symlink_metadata(path).unwrap();
        assert!(meta.file_type().is_file(), "{}", path.display());
    }
}

#[test]
fn the_staged_copy_is_identical_and_its_digest_is_reproducible_with_coreutils() {
    let model = tiny_llama();
    std::fs::write(model.path().join("chat_template.jinja"), "{{ messages }}").unwrap();
    let source = ModelSource::resolve(model.path(), Some("tiny".into())).unwrap();
    let root = tempfile::tempdir().unwrap();
    let mut calls = Vec::new();
    let staged = stage(&source, root.path(), |done, total| {
        calls.push((done, total))
    })
    .unwrap();

    assert_eq!(files_in(staged.dir.path()), files_in(model.path()));
    assert_eq!(staged.weights_sha256, coreutils_digest(model.path()));
    assert_eq!(staged.weights_sha256, coreutils_digest(staged.dir.path()));
    assert_eq!(
        (staged.weights_sha256.clone(), staged.manifest.clone()),
        digest_in_place(&source, no_progress).unwrap()
    );

    assert_eq!(staged.source.id, "tiny");
    assert_eq!(staged.source.scope, ManifestScope::Directory);
    assert_eq!(
        staged.source.format,
        ModelFormat::Safetensors {
            dir: staged.dir.path().to_owned()
        }
    );
    assert!(
        staged
            .source
            .files
            .iter()
            .all(|f| f.starts_with(staged.dir.path()))
    );
    let total = source.size();
    assert_eq!(calls.last(), Some(&(total, total)));
    assert!(calls.windows(2).all(|w| w[0].0 <= w[1].0));

    // The staged copy loads the same way as the original would.
    let again = ModelSource::resolve(staged.dir.path(), Some("tiny".into())).unwrap();
    assert_eq!(again.files, staged.source.files);
}

#[test]
fn a_gguf_given_as_a_file_is_staged_alone() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("m.gguf");
    std::fs::write(&file, b"GGUF and some weights").unwrap();
    std::fs::write(dir.path().join("chat_template.json"), "{}").unwrap();
    let source = ModelSource::resolve(&file, None).unwrap();
    let root = tempfile::tempdir().unwrap();
    let staged = stage(&source, root.path(), no_progress).unwrap();
    // mistral.rs reads siblings of the GGUF file: only the hashed one is there.
    assert_eq!(
        files_in(staged.dir.path()),
        [("m.gguf".to_owned(), b"GGUF and some weights".to_vec())]
    );
    let expected = Command::new("sh")
        .arg("-c")
        .arg("sha256sum -- m.gguf | sha256sum")
        .current_dir(dir.path())
        .output()
        .unwrap();
    let expected = String::from_utf8(expected.stdout).unwrap();
    assert_eq!(
        staged.weights_sha256,
        expected.split_whitespace().next().unwrap()
    );
    assert_eq!(
        staged.source.format,
        ModelFormat::Gguf {
            dir: staged.dir.path().to_owned(),
            file: "m.gguf".into()
        }
    );
}

#[test]
fn rewriting_the_source_after_staging_changes_nothing_that_is_loaded() {
    let model = tiny_llama();
    let source = ModelSource::resolve(model.path(), None).unwrap();
    let root = tempfile::tempdir().unwrap();
    let staged = stage(&source, root.path(), no_progress).unwrap();
    let staged_files = files_in(staged.dir.path());
    let digest = staged.weights_sha256.clone();

    // The host swaps the template and the weights once hashing is done.
    std::fs::write(
        model.path().join("tokenizer_config.json"),
        "{\"chat_template\": \"evil\"}",
    )
    .unwrap();
    let weights = model.path().join("model.safetensors");
    let mut bytes = std::fs::read(&weights).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&weights, bytes).unwrap();

    assert_eq!(files_in(staged.dir.path()), staged_files);
    assert_eq!(coreutils_digest(staged.dir.path()), digest);
    assert_eq!(staged.weights_sha256, digest);
    // Whereas the source on disk now hashes differently.
    assert_ne!(digest_in_place(&source, no_progress).unwrap().0, digest);
}

fn big_gguf(dir: &Path) -> PathBuf {
    let file = dir.join("big.gguf");
    let mut bytes = b"GGUF".to_vec();
    bytes.resize(3 << 20, 7);
    std::fs::write(&file, bytes).unwrap();
    file
}

#[test]
fn a_source_that_grows_while_being_copied_is_refused() {
    // The progress callback runs between chunk reads, exactly where a
    // concurrent writer on the host would act, so this is deterministic.
    let dir = tempfile::tempdir().unwrap();
    let file = big_gguf(dir.path());
    let source = ModelSource::resolve(&file, None).unwrap();
    let root = tempfile::tempdir().unwrap();
    let mut appended = false;
    let err = stage(&source, root.path(), |_, _| {
        if !appended {
            appended = true;
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(&file)
                .unwrap();
            f.write_all(b"appended by the host").unwrap();
        }
    })
    .unwrap_err();
    match err {
        ModelError::ChangedWhileReading {
            path,
            size_when_opened,
            bytes_read,
        } => {
            assert_eq!(path, file);
            assert_eq!(size_when_opened, 3 << 20);
            assert_eq!(bytes_read, (3 << 20) + 1);
        }
        other => panic!("unexpected {other}"),
    }
    assert!(appended);
    // The partial staging directory is gone.
    assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 0);
}

#[test]
fn a_source_that_shrinks_while_being_copied_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = big_gguf(dir.path());
    let source = ModelSource::resolve(&file, None).unwrap();
    let root = tempfile::tempdir().unwrap();
    let err = stage(&source, root.path(), |_, _| {
        std::fs::OpenOptions::new()
            .write(true)
            .open(&file)
            .unwrap()
            .set_len(1 << 20)
            .unwrap();
    })
    .unwrap_err();
    assert!(
        matches!(
            err,
            ModelError::ChangedWhileReading {
                size_when_opened,
                bytes_read,
                ..
            } if size_when_opened == 3 << 20 && bytes_read == 1 << 20
        ),
        "{err}"
    );
}

#[test]
fn the_staging_directory_is_private_and_removed_on_drop() {
    let model = tiny_llama();
    let source = ModelSource::resolve(model.path(), None).unwrap();
    let root = tempfile::tempdir().unwrap();
    let staged = stage(&source, root.path(), no_progress).unwrap();
    let path = staged.dir.path().to_owned();
    assert_eq!(path.parent(), Some(root.path()));
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700);
    for file in &staged.source.files {
        let mode = std::fs::metadata(file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o400, "{}", file.display());
    }
    drop(staged);
    assert!(!path.exists());
    assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 0);
}

#[test]
fn a_model_bigger_than_the_staging_filesystem_is_refused_before_copying() {
    // A sparse GGUF file bigger than the free space takes no space itself.
    let root = tempfile::tempdir().unwrap();
    let df = Command::new("df")
        .args(["-B1", "--output=avail"])
        .arg(root.path())
        .output()
        .unwrap();
    assert!(df.status.success());
    let available: u64 = String::from_utf8(df.stdout)
        .unwrap()
        .lines()
        .nth(1)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("huge.gguf");
    std::fs::write(&file, b"GGUF").unwrap();
    let size = available + (1 << 30);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&file)
        .unwrap()
        .set_len(size)
        .unwrap();
    let source = ModelSource::resolve(&file, None).unwrap();
    let mut copied = 0;
    let err = stage(&source, root.path(), |done, _| copied = done).unwrap_err();
    match &err {
        ModelError::NoRoomToStage {
            root: where_,
            needed,
            available: reported,
        } => {
            assert_eq!(where_, root.path());
            assert!(*needed >= size);
            // Other processes may change the free space a little meanwhile.
            assert!(
                reported.abs_diff(available) < (1 << 30),
                "{reported} vs {available}"
            );
        }
        other => panic!("unexpected {other}"),
    }
    assert!(err.to_string().contains(&root.path().display().to_string()));
    assert_eq!(copied, 0);
    assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 0);
}
