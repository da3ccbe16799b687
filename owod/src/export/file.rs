//! The file sink: JSON lines appended to `output.file.path`. The directory is created; a new file
//! is mode 0640 (records may hold secrets from command lines).

use std::{
    fs::{DirBuilder, File, OpenOptions},
    io,
    os::unix::fs::{DirBuilderExt, OpenOptionsExt},
    path::{Path, PathBuf},
};

use super::LineSink;

#[derive(Debug, thiserror::Error)]
#[error("cannot open the output file `{}`", .path.display())]
pub struct OpenError {
    path: PathBuf,
    #[source]
    source: io::Error,
}

pub fn file_sink(path: &Path) -> Result<LineSink<File>, OpenError> {
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
        move || {
            OpenOptions::new()
                .append(true)
                .create(true)
                .mode(0o640)
                .open(&path)
        }
    };
    let file = open().map_err(fail)?;
    Ok(LineSink::new(
        "file",
        path.display().to_string(),
        file,
        256 * 1024,
        Some(Box::new(open)),
    ))
}
