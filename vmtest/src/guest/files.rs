//! The activity lane's file monitors: create, open, rename, unlink and a failed open under
//! `/tmp`, and two writes to a watched file.

use std::{fs, io::Write, path::Path};

use anyhow::{ensure, Context as _};
use serde_json::Value;

use super::{marker, text, Check, Context};
use crate::{
    records::{at_least, Expect},
    verdict::Verdict,
};

/// The file records of one path, in order.
fn of_path<'a>(run: &'a super::Finished, path: &str) -> Vec<&'a Value> {
    run.records
        .filter(|e| e["event_type"] == "file" && e["path"] == path)
}

/// A file created, opened, renamed and unlinked in a fresh directory under /tmp, and an open of
/// a name that does not exist.
pub fn lifecycle(cx: &Context) -> anyhow::Result<Check> {
    let dir = Path::new("/tmp").join(marker("files"));
    fs::create_dir(&dir)?;
    let a = dir.join(marker("a"));
    let b = dir.join(marker("b"));
    let missing = dir.join(marker("missing"));
    fs::File::create(&a).context("create")?;
    drop(fs::File::open(&a).context("open")?);
    fs::rename(&a, &b).context("rename")?;
    fs::remove_file(&b).context("unlink")?;
    let err = fs::File::open(&missing).expect_err("a name nobody created");
    ensure!(
        err.raw_os_error() == Some(libc::ENOENT),
        "open of a missing file: {err}"
    );
    let me = cx.me;
    Ok(Box::new(move |run| {
        let (a, b, missing) = (text(&a), text(&b), text(&missing));
        let of_a = of_path(run, &a);
        let kinds: Vec<&Value> = of_a.iter().map(|r| &r["event"]["type"]).collect();
        if kinds != ["create", "open", "rename"] {
            return Err(format!(
                "the records of {a} are of types {kinds:?}, not create, open, rename: {of_a:?}"
            ));
        }
        let fd = at_least(0);
        Expect::new("the create", of_a[0])
            .eq("pid", me)
            .that("ret", "a file descriptor", &fd)
            .done()?;
        Expect::new("the open", of_a[1])
            .eq("pid", me)
            .that("ret", "a file descriptor", &fd)
            .done()?;
        Expect::new("the rename", of_a[2])
            .eq("pid", me)
            .eq("path2", b.as_str())
            .eq("ret", 0)
            .done()?;
        let of_b = of_path(run, &b);
        let unlink = of_b
            .iter()
            .find(|r| r["event"]["type"] == "unlink")
            .ok_or_else(|| format!("no unlink record of {b}: {of_b:?}"))?;
        Expect::new("the unlink", unlink)
            .eq("pid", me)
            .eq("ret", 0)
            .done()?;
        let of_missing = of_path(run, &missing);
        let failed = of_missing
            .first()
            .ok_or_else(|| format!("no record of the failed open of {missing}"))?;
        Expect::new("the failed open", failed)
            .eq("type", "open")
            .eq("pid", me)
            .eq("ret", -libc::ENOENT)
            .done()?;
        Ok(Verdict::pass(format!(
            "{a}: create, open, rename, unlink, ENOENT"
        )))
    }))
}

/// Two writes, of 5 and 7 bytes, to a file under /tmp.
pub fn writes(cx: &Context) -> anyhow::Result<Check> {
    let path = Path::new("/tmp").join(marker("write"));
    let mut file = fs::File::create(&path)?;
    file.write_all(b"first")?;
    file.write_all(b"second!")?;
    drop(file);
    let me = cx.me;
    Ok(Box::new(move |run| {
        let path = text(&path);
        let writes = run
            .records
            .filter(|e| e["event_type"] == "write" && e["path"] == path.as_str());
        if writes.len() != 2 {
            return Err(format!(
                "{} write records for {path}, not 2: {writes:?}",
                writes.len()
            ));
        }
        Expect::new("the first write", writes[0])
            .eq("pid", me)
            .eq("count", 5)
            .that("fd", "a file descriptor", at_least(3))
            .done()?;
        Expect::new("the second write", writes[1])
            .eq("pid", me)
            .eq("count", 7)
            .eq("fd", writes[0]["event"]["fd"].clone())
            .done()?;
        Ok(Verdict::pass(format!(
            "{path}: counts 5 and 7 on fd {}",
            writes[0]["event"]["fd"]
        )))
    }))
}
