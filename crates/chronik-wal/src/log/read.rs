//! The read side: walking frames across segments without holding the partition lock.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use super::Shared;
use crate::batch::BatchHeader;
use crate::error::WalError;
use crate::segment::{FrameInfo, FrameReader, ReadFrameError, Segment, SEGMENT_HEADER_BYTES};

/// A cheap clone of what a reader needs from one segment.
pub(super) struct SegmentView {
    base_offset: i64,
    size_bytes: u64,
    file: Arc<File>,
    path: Arc<Path>,
}

impl SegmentView {
    pub(super) fn of(s: &Segment) -> Self {
        SegmentView {
            base_offset: s.base_offset,
            size_bytes: s.size_bytes,
            file: s.file.clone(),
            path: s.path.clone(),
        }
    }
}

impl Shared {
    /// The segment after the one based at `base_offset`, for readers crossing segments.
    pub(super) fn view_after(&self, base_offset: i64) -> Option<SegmentView> {
        let inner = self.lock();
        let i = inner
            .segments
            .partition_point(|s| s.base_offset <= base_offset);
        inner.segments.get(i).map(SegmentView::of)
    }

    /// Walks frames from `pos` in `view` and then the following segments, calling `visit` for
    /// each until it returns `false`. Checks offset continuity. Used by every read-side
    /// operation; the partition lock is only taken to step to the next segment.
    pub(super) fn walk(
        &self,
        mut view: SegmentView,
        mut pos: u64,
        read_ahead: usize,
        visit: &mut dyn FnMut(&mut FrameCtx<'_, '_>) -> Result<bool, WalError>,
    ) -> Result<(), WalError> {
        let mut expected: Option<i64> = None;
        loop {
            let mut reader = FrameReader::new(&view.file, view.size_bytes, read_ahead);
            // Each iteration advances pos by at least one minimal frame.
            while pos < view.size_bytes {
                let frame = reader
                    .frame_at(pos)
                    .map_err(|e| frame_error(&view.path, pos, e))?;
                let h = frame.header;
                if let Some(exp) = expected {
                    if h.base_offset != exp {
                        return Err(WalError::Corrupt {
                            path: view.path.to_path_buf(),
                            position: pos,
                            reason: format!("expected base offset {exp}, found {}", h.base_offset),
                        });
                    }
                }
                expected = Some(h.last_offset().saturating_add(1));
                let mut ctx = FrameCtx {
                    reader: &mut reader,
                    frame,
                    path: &view.path,
                };
                if !visit(&mut ctx)? {
                    return Ok(());
                }
                pos = frame.end();
            }
            match self.view_after(view.base_offset) {
                Some(v) => {
                    view = v;
                    pos = SEGMENT_HEADER_BYTES;
                }
                None => return Ok(()),
            }
        }
    }
}

/// One frame seen by [`Shared::walk`]: its header, and its payload on demand.
pub(super) struct FrameCtx<'r, 'f> {
    reader: &'r mut FrameReader<'f>,
    frame: FrameInfo,
    path: &'r Path,
}

impl FrameCtx<'_, '_> {
    pub(super) fn header(&self) -> &BatchHeader {
        &self.frame.header
    }

    pub(super) fn payload(&mut self) -> Result<&[u8], WalError> {
        let path = self.path;
        self.reader.payload(&self.frame).map_err(|e| WalError::Io {
            op: "read segment",
            path: path.to_path_buf(),
            source: e,
        })
    }
}

fn frame_error(path: &Path, pos: u64, e: ReadFrameError) -> WalError {
    match e {
        ReadFrameError::Problem(p) => WalError::Corrupt {
            path: path.to_path_buf(),
            position: pos,
            reason: p.to_string(),
        },
        ReadFrameError::Io(e) => WalError::Io {
            op: "read segment",
            path: path.to_path_buf(),
            source: e,
        },
    }
}
