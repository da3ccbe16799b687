//! The file sink: JSON lines appended to `output.file.path`. The directory is created; a new file
//! is mode 0640 (records may hold secrets from command lines).

use std::{
    fs::{DirBuilder, File, OpenOptions},
    io::{self, BufWriter, Write},
    os::unix::fs::{DirBuilderExt, OpenOptionsExt},
    path::{Path, PathBuf},
};

use super::{Sink, SinkErrors};

pub struct FileSink {
    path: PathBuf,
    out: BufWriter<File>,
    errors: SinkErrors,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot open the output file `{}`", .path.display())]
pub struct OpenError {
    path: PathBuf,
    #[source]
    source: io::Error,
}

impl FileSink {
    pub fn open(path: &Path) -> Result<FileSink, OpenError> {
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
        let file = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o640)
            .open(path)
            .map_err(fail)?;
        Ok(FileSink {
            path: path.to_owned(),
            out: BufWriter::with_capacity(256 * 1024, file),
            errors: SinkErrors::default(),
        })
    }
}

impl Sink for FileSink {
    fn name(&self) -> &'static str {
        "file"
    }

    fn write_line(&mut self, line: &str) {
        let result = self
            .out
            .write_all(line.as_bytes())
            .and_then(|()| self.out.write_all(b"\n"));
        self.errors
            .record(result, "file", &self.path.display().to_string());
    }

    fn flush(&mut self) {
        let result = self.out.flush();
        self.errors
            .record(result, "file", &self.path.display().to_string());
    }

    fn errors(&self) -> u64 {
        self.errors.total
    }
}
