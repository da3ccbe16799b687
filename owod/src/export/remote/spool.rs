//! The on-disk spool of one remote: every record for the remote is appended here first (segment
//! files of JSON lines, fsync'd per batch), and the sender reads from here, moving a persisted
//! cursor forward only once the collector has the records. So a collector that is down or slow
//! costs disk, not memory, and records not yet delivered at shutdown go out after the next start.
//! Bounded: past `max_bytes` the oldest segment goes, and the records in it that were never
//! delivered are counted, with their `seq` range.
//!
//! Layout: `seg-<20-digit id>.jsonl` files and a `cursor` file, "<segment id> <byte offset>".

use std::{
    fs::{self, File, OpenOptions},
    io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write},
    path::{Path, PathBuf},
};

use crate::export::{
    file::open_owned,
    format::{run_of, seq_of},
};

/// The longest line a segment can hold: a record and its newline.
const LINE_READ_MAX: u64 = owo_common::render::LINE_MAX as u64 + 1;

/// A segment is closed and a new one started past this size (less for a small spool).
pub const SEGMENT_BYTES: u64 = 4 << 20;

/// Where the sender is: the first byte not yet delivered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    pub segment: u64,
    pub offset: u64,
}

/// Records dropped because the spool was full.
#[derive(Debug, PartialEq, Eq)]
pub struct Dropped {
    pub count: u64,
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
}

fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("seg-{id:020}.jsonl"))
}

/// The segment ids present, oldest first.
pub fn segments(dir: &Path) -> io::Result<Vec<u64>> {
    let mut ids: Vec<u64> = fs::read_dir(dir)?
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_str()?
                .strip_prefix("seg-")?
                .strip_suffix(".jsonl")?
                .parse()
                .ok()
        })
        .collect();
    ids.sort_unstable();
    Ok(ids)
}

/// The bytes of the spool in `dir` from `at` on: what waits to be sent (from the segments'
/// sizes).
fn backlog_bytes(dir: &Path, at: Position) -> u64 {
    let Ok(ids) = segments(dir) else {
        return 0;
    };
    ids.into_iter()
        .filter(|&id| id >= at.segment)
        .map(|id| {
            let len = fs::metadata(segment_path(dir, id)).map_or(0, |m| m.len());
            match id == at.segment {
                true => len.saturating_sub(at.offset),
                false => len,
            }
        })
        .sum()
}

/// Lines the reader skipped as corrupt, in one streak: how many, and the seqs they lie between
/// (after the good line before them, before the good line after them), where those two are of
/// one run: the records the lines were, if they were records.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Skipped {
    pub lines: u64,
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    /// The run those seqs are of (a spool holds the records of earlier runs too).
    pub run_id: Option<String>,
}

/// The append side (owned by the writer task).
pub struct SpoolWriter {
    dir: PathBuf,
    max_bytes: u64,
    /// A quarter of the spool, within [64 KiB, SEGMENT_BYTES]: a small spool still drops in steps.
    segment_bytes: u64,
    current: u64,
    file: File,
    written: u64,
}

impl SpoolWriter {
    pub fn open(dir: &Path, max_bytes: u64) -> io::Result<SpoolWriter> {
        fs::DirBuilder::new().recursive(true).create(dir)?;
        let current = segments(dir)?.last().map_or(0, |id| id + 1);
        let file = open_owned(
            OpenOptions::new().append(true).create(true),
            &segment_path(dir, current),
        )?;
        let segment_bytes = (max_bytes / 4).clamp(64 << 10, SEGMENT_BYTES);
        Ok(SpoolWriter {
            dir: dir.to_owned(),
            max_bytes,
            segment_bytes,
            current,
            file,
            written: 0,
        })
    }

    /// Append one record (a JSON line without its newline). On failure (a full disk) nothing
    /// of it stays: a partly written line is cut off again, so that the next record does not
    /// join it. The next record then starts a new segment: the sender deletes a segment once it
    /// has delivered it and moved on, and that is how a full disk gets room again.
    pub fn append(&mut self, line: &str) -> io::Result<()> {
        if self.written >= self.segment_bytes {
            self.next_segment()?;
        }
        let mut bytes = Vec::with_capacity(line.len() + 1);
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
        if let Err(err) = self.file.write_all(&bytes) {
            let cut = self.file.set_len(self.written);
            if self.written > 0 || cut.is_err() {
                self.written = self.segment_bytes;
            }
            return Err(err);
        }
        self.written += bytes.len() as u64;
        Ok(())
    }

    fn next_segment(&mut self) -> io::Result<()> {
        self.file.sync_data()?;
        let file = open_owned(
            OpenOptions::new().append(true).create(true),
            &segment_path(&self.dir, self.current + 1),
        )?;
        self.current += 1;
        self.file = file;
        self.written = 0;
        Ok(())
    }

    /// Make what was appended durable; the sender may read up to the returned position.
    /// The bytes from `delivered` to the end.
    pub fn backlog_bytes(&self, delivered: Position) -> u64 {
        backlog_bytes(&self.dir, delivered)
    }

    pub fn sync(&mut self) -> io::Result<Position> {
        self.file.sync_data()?;
        Ok(self.position())
    }

    /// The end of what was appended.
    pub fn position(&self) -> Position {
        Position {
            segment: self.current,
            offset: self.written,
        }
    }

    /// Drop the oldest segments while the spool is over its size, and tell what was lost of them:
    /// the records at or past `delivered` in them.
    pub fn enforce_limit(&mut self, delivered: Position) -> io::Result<Option<Dropped>> {
        let mut dropped = Dropped {
            count: 0,
            first_seq: None,
            last_seq: None,
        };
        loop {
            let ids = segments(&self.dir)?;
            let total: u64 = ids
                .iter()
                .filter_map(|id| fs::metadata(segment_path(&self.dir, *id)).ok())
                .map(|m| m.len())
                .sum();
            let Some(&oldest) = ids.first() else { break };
            if total <= self.max_bytes || oldest == self.current {
                break;
            }
            let path = segment_path(&self.dir, oldest);
            if oldest >= delivered.segment {
                let skip = if oldest == delivered.segment {
                    delivered.offset
                } else {
                    0
                };
                let mut file = File::open(&path)?;
                file.seek(SeekFrom::Start(skip))?;
                for line in BufReader::new(file).lines() {
                    let line = line?;
                    dropped.count += 1;
                    if let Some(seq) = seq_of(&line) {
                        dropped.first_seq.get_or_insert(seq);
                        dropped.last_seq = Some(seq);
                    }
                }
            }
            fs::remove_file(&path)?;
        }
        Ok((dropped.count > 0).then_some(dropped))
    }
}

/// The read side (owned by the sender task).
pub struct SpoolReader {
    dir: PathBuf,
    pub at: Position,
    /// Streaks of lines skipped as corrupt (not valid UTF-8, longer than any record, or the rest
    /// of a line a corrupt cursor pointed into), for the sender to take and tell.
    pub skipped: Vec<Skipped>,
    /// The streak going on: its lines, and the good line before it (seq, run).
    streak: u64,
    streak_after: Option<(u64, String)>,
    /// The last good line read (seq, run).
    last: Option<(u64, String)>,
}

impl SpoolReader {
    pub fn open(dir: &Path) -> io::Result<SpoolReader> {
        fs::DirBuilder::new().recursive(true).create(dir)?;
        let at = fs::read_to_string(dir.join("cursor"))
            .ok()
            .and_then(|s| {
                let (seg, off) = s.trim().split_once(' ')?;
                Some(Position {
                    segment: seg.parse().ok()?,
                    offset: off.parse().ok()?,
                })
            })
            .unwrap_or_default();
        Ok(SpoolReader {
            dir: dir.to_owned(),
            at,
            skipped: Vec::new(),
            streak: 0,
            streak_after: None,
            last: None,
        })
    }

    /// A corrupt line was skipped.
    fn skip(&mut self) {
        if self.streak == 0 {
            self.streak_after = self.last.clone();
        }
        self.streak += 1;
    }

    /// A good line was read: it ends a streak of corrupt ones.
    fn read(&mut self, line: &str) {
        let (Some(seq), Some(run)) = (seq_of(line), run_of(line)) else {
            return;
        };
        if self.streak > 0 {
            let around = match self.streak_after.take() {
                Some((after, of)) if of == run && after + 1 < seq => Some((after + 1, seq - 1)),
                // Next to each other, of two runs, or nothing read before them: no seq to name.
                _ => None,
            };
            self.skipped.push(Skipped {
                lines: std::mem::take(&mut self.streak),
                first_seq: around.map(|(first, _)| first),
                last_seq: around.map(|(_, last)| last),
                run_id: around.map(|_| run.to_owned()),
            });
        }
        match &mut self.last {
            Some((last, of)) => {
                *last = seq;
                if of != run {
                    *of = run.to_owned();
                }
            }
            None => self.last = Some((seq, run.to_owned())),
        }
    }

    /// Up to `max_events` records (and about `max_bytes`) from the cursor, not past `end` (what
    /// the writer has synced). Moves to the next segment, and deletes the finished one, as needed.
    /// The bytes from the cursor to the end.
    pub fn backlog_bytes(&self) -> u64 {
        backlog_bytes(&self.dir, self.at)
    }

    pub fn read_batch(
        &mut self,
        end: Position,
        max_events: usize,
        max_bytes: usize,
    ) -> io::Result<(Vec<String>, Position)> {
        loop {
            // A segment dropped for space, or a cursor from before a reset: go to the oldest.
            let ids = segments(&self.dir)?;
            if !ids.contains(&self.at.segment) {
                match ids.iter().find(|&&id| id > self.at.segment).or(ids.first()) {
                    Some(&id) if id <= end.segment => {
                        self.at = Position {
                            segment: id,
                            offset: 0,
                        }
                    }
                    _ => return Ok((Vec::new(), self.at)),
                }
            }
            let limit = if self.at.segment == end.segment {
                end.offset
            } else {
                u64::MAX
            };
            let path = segment_path(&self.dir, self.at.segment);
            let mut file = File::open(&path)?;
            let mut offset = self.at.offset;
            // A cursor that points into a line (a corrupt cursor file) starts at the next one.
            if offset > 0 {
                let mut before = [0u8];
                file.seek(SeekFrom::Start(offset - 1))?;
                if file.read(&mut before)? == 1 && before[0] != b'\n' {
                    let mut rest = BufReader::new((&mut file).take(limit.saturating_sub(offset)));
                    let skipped = rest.skip_until(b'\n')? as u64;
                    if skipped == 0 {
                        // Nothing to read past the cursor yet.
                        return Ok((Vec::new(), self.at));
                    }
                    offset += skipped;
                    self.at.offset = offset;
                    // Counted once, where the line ends (it may end in a later read).
                    file.seek(SeekFrom::Start(offset - 1))?;
                    if file.read(&mut before)? == 1 && before[0] == b'\n' {
                        self.skip();
                    }
                }
            }
            file.seek(SeekFrom::Start(offset))?;
            let mut reader = BufReader::new(file.take(limit.saturating_sub(offset)));
            let (mut lines, mut bytes) = (Vec::new(), 0usize);
            let mut line = Vec::new();
            while lines.len() < max_events && bytes < max_bytes {
                line.clear();
                let n = (&mut reader)
                    .take(LINE_READ_MAX)
                    .read_until(b'\n', &mut line)?;
                if line.last() != Some(&b'\n') {
                    if n as u64 == LINE_READ_MAX {
                        // Longer than any record: not one owod wrote. Skip to its end.
                        offset += (n + reader.skip_until(b'\n')?) as u64;
                        self.skip();
                        continue;
                    }
                    break; // the end, or a line still being written
                }
                offset += n as u64;
                line.pop();
                match std::str::from_utf8(&line) {
                    Ok(text) => {
                        bytes += n;
                        self.read(text);
                        lines.push(text.to_owned());
                    }
                    // Not valid UTF-8: not a line owod wrote either.
                    Err(_) => self.skip(),
                }
            }
            if lines.is_empty() && offset > self.at.offset {
                // Only corrupt lines so far: past them, and on.
                self.at.offset = offset;
                continue;
            }
            if !lines.is_empty() {
                return Ok((
                    lines,
                    Position {
                        segment: self.at.segment,
                        offset,
                    },
                ));
            }
            if self.at.segment < end.segment {
                // This segment is done: on to the next.
                let _ = fs::remove_file(&path);
                self.at = Position {
                    segment: self.at.segment + 1,
                    offset: 0,
                };
                continue;
            }
            return Ok((Vec::new(), self.at));
        }
    }

    /// The collector has everything before `to`.
    pub fn commit(&mut self, to: Position) -> io::Result<()> {
        self.at = to;
        let tmp = self.dir.join("cursor.tmp");
        let mut file = open_owned(
            OpenOptions::new().write(true).create(true).truncate(true),
            &tmp,
        )?;
        file.write_all(format!("{} {}\n", to.segment, to.offset).as_bytes())?;
        // On disk before it takes the old cursor's place: a crash then leaves one or the other.
        file.sync_data()?;
        fs::rename(tmp, self.dir.join("cursor"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(seq: u64) -> String {
        format!(
            "{{\"seq\":{seq},\"run_id\":\"r\",\"event\":{{\"event_type\":\"x\",\"pad\":\"{}\"}}}}",
            "p".repeat(100)
        )
    }

    proptest::proptest! {
        /// Whatever a segment and the cursor hold, the reader hands out only whole lines of
        /// valid UTF-8 within a record's length, and gets to the end.
        #[test]
        fn any_segment_and_cursor_are_read_to_the_end(
            bytes in proptest::collection::vec(proptest::prop_oneof![
                proptest::strategy::Just(b'\n'),
                proptest::prelude::any::<u8>(),
            ], 0..4096),
            cursor in 0u64..5000,
        ) {
            let dir = tempfile::tempdir().unwrap();
            fs::write(segment_path(dir.path(), 0), &bytes).unwrap();
            fs::write(dir.path().join("cursor"), format!("0 {cursor}\n")).unwrap();
            let mut r = SpoolReader::open(dir.path()).unwrap();
            let end = Position { segment: 0, offset: bytes.len() as u64 };
            for _ in 0..bytes.len() + 2 {
                let (batch, to) = r.read_batch(end, 7, usize::MAX).unwrap();
                if batch.is_empty() {
                    break;
                }
                for line in &batch {
                    proptest::prop_assert!(!line.contains('\n'));
                }
                r.commit(to).unwrap();
            }
            let (batch, _) = r.read_batch(end, 7, usize::MAX).unwrap();
            proptest::prop_assert!(batch.is_empty(), "read to the end");
        }
    }

    #[test]
    fn corrupt_lines_and_a_cursor_into_a_line_are_skipped_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = Vec::new();
        for seq in 1..=3 {
            bytes.extend(record(seq).as_bytes());
            bytes.push(b'\n');
        }
        bytes.extend(b"\xff\xfe not UTF-8\n");
        bytes.extend(vec![b'x'; 70 << 10]);
        bytes.push(b'\n');
        bytes.extend(record(4).as_bytes());
        bytes.push(b'\n');
        fs::write(segment_path(dir.path(), 0), &bytes).unwrap();
        // A cursor into the middle of the first record.
        fs::write(dir.path().join("cursor"), "0 10\n").unwrap();
        let mut r = SpoolReader::open(dir.path()).unwrap();
        let end = Position {
            segment: 0,
            offset: bytes.len() as u64,
        };
        let mut seqs = Vec::new();
        loop {
            let (batch, to) = r.read_batch(end, 10, usize::MAX).unwrap();
            if batch.is_empty() {
                break;
            }
            seqs.extend(batch.iter().map(|l| seq_of(l).unwrap()));
            r.commit(to).unwrap();
        }
        assert_eq!(seqs, [2, 3, 4]);
        let told = |lines| Skipped {
            lines,
            ..Skipped::default()
        };
        assert_eq!(
            r.skipped,
            [
                // The rest of the first line: nothing was read before it.
                told(1),
                // The invalid line and the long one, between 3 and 4: no record of the run.
                told(2),
            ]
        );
    }

    #[test]
    fn a_corrupt_line_in_a_gap_of_seqs_names_the_gap() {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = Vec::new();
        for line in [
            record(1).into_bytes(),
            record(2).into_bytes(),
            b"\xff not UTF-8".to_vec(),
            record(5).into_bytes(),
        ] {
            bytes.extend(line);
            bytes.push(b'\n');
        }
        fs::write(segment_path(dir.path(), 0), &bytes).unwrap();
        let mut r = SpoolReader::open(dir.path()).unwrap();
        let end = Position {
            segment: 0,
            offset: bytes.len() as u64,
        };
        let (batch, _) = r.read_batch(end, 10, usize::MAX).unwrap();
        let seqs: Vec<u64> = batch.iter().map(|l| seq_of(l).unwrap()).collect();
        assert_eq!(seqs, [1, 2, 5]);
        assert_eq!(
            r.skipped,
            [Skipped {
                lines: 1,
                first_seq: Some(3),
                last_seq: Some(4),
                run_id: Some("r".to_owned()),
            }]
        );
    }

    #[test]
    fn a_segment_or_cursor_planted_as_a_link_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = dir.path().join("elsewhere");
        fs::write(&elsewhere, "").unwrap();
        let spool = dir.path().join("spool");
        let mut w = SpoolWriter::open(&spool, 0).unwrap();
        // The next segment's name, taken before owod gets to it.
        std::os::unix::fs::symlink(&elsewhere, segment_path(&spool, 1)).unwrap();
        let line = "x".repeat(w.segment_bytes as usize);
        w.append(&line).unwrap();
        let err = w.append("{}").unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");

        std::os::unix::fs::symlink(&elsewhere, spool.join("cursor.tmp")).unwrap();
        let mut r = SpoolReader::open(&spool).unwrap();
        let end = w.sync().unwrap();
        let (_, to) = r.read_batch(end, 1, usize::MAX).unwrap();
        let err = r.commit(to).unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        assert_eq!(
            fs::read_to_string(&elsewhere).unwrap(),
            "",
            "nothing written through either"
        );
    }

    #[test]
    fn records_come_back_in_order_and_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = SpoolWriter::open(dir.path(), 1 << 30).unwrap();
        for seq in 1..=10 {
            w.append(&record(seq)).unwrap();
        }
        let end = w.sync().unwrap();
        let mut r = SpoolReader::open(dir.path()).unwrap();
        let (batch, to) = r.read_batch(end, 4, usize::MAX).unwrap();
        assert_eq!(
            batch.iter().map(|l| seq_of(l).unwrap()).collect::<Vec<_>>(),
            [1, 2, 3, 4]
        );
        r.commit(to).unwrap();
        drop((w, r));
        // A restart: the writer starts a new segment, the reader resumes at its cursor.
        let mut w = SpoolWriter::open(dir.path(), 1 << 30).unwrap();
        w.append(&record(11)).unwrap();
        let end = w.sync().unwrap();
        let mut r = SpoolReader::open(dir.path()).unwrap();
        let mut seen = Vec::new();
        loop {
            let (batch, to) = r.read_batch(end, 3, usize::MAX).unwrap();
            if batch.is_empty() {
                break;
            }
            seen.extend(batch.iter().map(|l| seq_of(l).unwrap()));
            r.commit(to).unwrap();
        }
        assert_eq!(seen, (5..=11).collect::<Vec<_>>());
    }

    #[test]
    fn a_full_spool_drops_the_oldest_and_says_which() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = SpoolWriter::open(dir.path(), 4 * SEGMENT_BYTES).unwrap();
        let per_segment = SEGMENT_BYTES / (record(1).len() as u64 + 1) + 1;
        for seq in 1..=(per_segment * 6) {
            w.append(&record(seq)).unwrap();
        }
        w.sync().unwrap();
        let dropped = w
            .enforce_limit(Position::default())
            .unwrap()
            .expect("something was dropped");
        assert_eq!(dropped.first_seq, Some(1));
        assert!(
            dropped.count >= per_segment && dropped.last_seq == Some(dropped.count),
            "{dropped:?}"
        );
        // The reader goes on from the oldest segment left.
        let end = w.sync().unwrap();
        let mut r = SpoolReader::open(dir.path()).unwrap();
        let (batch, _) = r.read_batch(end, 1, usize::MAX).unwrap();
        assert_eq!(seq_of(&batch[0]), Some(dropped.count + 1));
    }
}
