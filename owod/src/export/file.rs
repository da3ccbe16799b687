//! The file sink: JSON lines appended to `output.file.path`. The directory is created; a new file
//! is mode 0640 (records may hold secrets from command lines).

use std::{
    fs::{DirBuilder, File, OpenOptions},
    io,
    os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt},
    path::{Path, PathBuf},
};

use tokio::sync::mpsc;

use super::{LineSink, SinkLoss, Writer};
use crate::config::Format;

#[derive(Debug, thiserror::Error)]
#[error("cannot open the output file `{}`", .path.display())]
pub struct OpenError {
    path: PathBuf,
    #[source]
    source: io::Error,
}

pub fn file_sink(
    path: &Path,
    format: Format,
    losses: Option<mpsc::Sender<SinkLoss>>,
) -> Result<LineSink, OpenError> {
    let fail = |source| OpenError {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent() {
        DirBuilder::new()
            .recursive(true)
            .mode(0o750)
            .create(dir)
            .map_err(fail)?;
    }
    let open = {
        let path = path.to_owned();
        move || open_owned(OpenOptions::new().append(true).create(true), &path)
    };
    let file = open().map_err(fail)?;
    let at = path.to_owned();
    let mut writer = Writer::new(
        "file",
        path.display().to_string(),
        file,
        Some(Box::new(open)),
    )
    .following(Box::new(move |file: &File| moved(&at, file)));
    if let Some(losses) = losses {
        writer = writer.telling(losses);
    }
    writer.start(256 * 1024, format).map_err(fail)
}

/// The path no longer names `file`: it was renamed or removed, or the file system it is on is
/// gone from under the path (a dead network or FUSE mount). A path that cannot be looked at for
/// another reason is left alone.
fn moved(path: &Path, file: &File) -> bool {
    match (std::fs::symlink_metadata(path), file.metadata()) {
        (Ok(there), Ok(open)) => (there.dev(), there.ino()) != (open.dev(), open.ino()),
        (Err(e), _) => e.kind() == io::ErrorKind::NotFound,
        (Ok(_), Err(_)) => true,
    }
}

/// Open a file that owod writes records to (mode 0640 if new), refusing what another user could
/// have put in its place: a symbolic link, something other than a regular file, a file owned by
/// another user, or one that group or others may write.
pub fn open_owned(options: &mut OpenOptions, path: &Path) -> io::Result<File> {
    let file = options
        .mode(0o640)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => io::Error::other("it is a symbolic link"),
            _ => e,
        })?;
    let meta = file.metadata()?;
    let owod = nix::unistd::geteuid().as_raw();
    if !meta.file_type().is_file() {
        return Err(io::Error::other("it is not a regular file"));
    }
    if meta.uid() != owod {
        return Err(io::Error::other(format!(
            "it is owned by uid {}, not by owod's uid {owod}",
            meta.uid()
        )));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(io::Error::other(format!(
            "its mode {:04o} lets others write to it",
            meta.mode() & 0o7777
        )));
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{symlink, PermissionsExt};

    use super::*;

    #[test]
    fn a_link_a_stranger_s_file_or_a_writable_one_is_not_written_to() {
        let dir = tempfile::tempdir().unwrap();
        let refused = |name: &str| {
            let err = file_sink(&dir.path().join(name), Format::Owo, None)
                .err()
                .expect(name);
            format!("{:#}", anyhow::Error::from(err))
        };
        let target = dir.path().join("target");
        std::fs::write(&target, "").unwrap();
        symlink(&target, dir.path().join("link")).unwrap();
        assert!(
            refused("link").contains("symbolic link"),
            "{}",
            refused("link")
        );

        std::fs::create_dir(dir.path().join("dir")).unwrap();
        assert!(refused("dir").contains("Is a directory") || refused("dir").contains("regular"));

        let open = dir.path().join("open");
        std::fs::write(&open, "").unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o666)).unwrap();
        assert!(refused("open").contains("mode 0666"), "{}", refused("open"));

        if nix::unistd::geteuid().is_root() {
            let theirs = dir.path().join("theirs");
            std::fs::write(&theirs, "").unwrap();
            std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
            assert!(
                refused("theirs").contains("uid 65534"),
                "{}",
                refused("theirs")
            );
        }

        // A file of its own, or a new one, is fine, and a new one is 0640.
        file_sink(&target, Format::Owo, None).unwrap();
        file_sink(&dir.path().join("new"), Format::Owo, None).unwrap();
        let mode = std::fs::metadata(dir.path().join("new")).unwrap().mode();
        assert_eq!(mode & 0o777, 0o640);
    }
}
