//! Whole-segment transfer between two logs on real files: the copy is byte-identical, reads
//! and recovery see it as an ordinary segment, and anything wrong with it changes nothing.

use super::*;
use crate::{CatchUp, SealedSegment, SegmentInstall, WalError};

/// Copies a sealed segment into an install in `chunk`-byte pieces, as replication streams it.
fn copy_segment(from: &SealedSegment, to: &mut SegmentInstall, chunk: usize) {
    let mut buf = vec![0u8; chunk];
    let mut pos = 0;
    while pos < from.size_bytes {
        let n = from.read_at(pos, &mut buf).unwrap();
        to.write(&buf[..n]).unwrap();
        pos += n as u64;
    }
}

/// Files of unfinished transfers in the partition directory.
fn incoming_files(root: &Path) -> usize {
    std::fs::read_dir(part_dir(root))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".incoming")
        })
        .count()
}

#[tokio::test]
async fn installed_segments_are_byte_identical_and_survive_reopen() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let (leader, stored) = with_sealed_segments(a.path()).await;
    assert_eq!(
        leader.catch_up_plan(leader.log_end_offset()),
        CatchUp::ReadTo(leader.log_end_offset())
    );
    assert!(
        leader.sealed_segment_at(leader.log_end_offset()).is_none(),
        "active is not shipped"
    );
    let follower = open(b.path(), small_config()).await;
    // Whole sealed segments while there are any at the follower's end, then batches.
    let mut installed = 0;
    while let Some(seg) = leader.sealed_segment_at(follower.log_end_offset()) {
        assert_eq!(leader.catch_up_plan(seg.base_offset), CatchUp::WholeSegment);
        assert_eq!(
            leader.catch_up_plan(seg.base_offset + 1),
            CatchUp::ReadTo(seg.next_offset)
        );
        let mut inst = follower.begin_install(seg.base_offset).unwrap();
        copy_segment(&seg, &mut inst, 100);
        let verified = follower.verify_install(inst).unwrap();
        assert_eq!(verified.next_offset(), seg.next_offset);
        assert_eq!(verified.epochs(), &[(3, seg.base_offset)]);
        follower.finish_install(verified).unwrap();
        assert_eq!(follower.log_end_offset(), seg.next_offset);
        assert_eq!(
            std::fs::read(log_path(b.path(), seg.base_offset)).unwrap(),
            std::fs::read(log_path(a.path(), seg.base_offset)).unwrap()
        );
        installed += 1;
    }
    assert!(installed >= 3, "{installed}");
    let rest = leader
        .read(follower.log_end_offset(), usize::MAX, i64::MAX)
        .unwrap();
    for range in crate::split_batches(&rest.data).unwrap() {
        follower
            .append_replica(&mut rest.data[range].to_vec())
            .unwrap();
    }
    follower
        .wait_committed(follower.log_end_offset())
        .await
        .unwrap();
    assert_eq!(read_all(&follower, 0), concat(&stored));
    // Reopened, the follower recovers the installed segments like its own.
    drop(follower);
    let follower = open(b.path(), small_config()).await;
    assert_eq!(follower.log_end_offset(), leader.log_end_offset());
    assert_eq!(read_all(&follower, 0), concat(&stored));
    assert_eq!(incoming_files(b.path()), 0);
}

#[tokio::test]
async fn a_damaged_or_misplaced_segment_changes_nothing() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let (leader, _) = with_sealed_segments(a.path()).await;
    let follower = open(b.path(), small_config()).await;
    let seg = leader.sealed_segment_at(0).unwrap();
    let mut bytes = vec![0u8; seg.size_bytes as usize];
    seg.read_at(0, &mut bytes).unwrap();

    // Not at the follower's end.
    assert!(matches!(
        follower.begin_install(seg.next_offset),
        Err(WalError::ReplicaGap { .. })
    ));
    // A flipped byte in a frame, a torn tail, a header naming another base.
    let mut flipped = bytes.clone();
    let last = flipped.len() - 3;
    flipped[last] ^= 0x40;
    let torn = bytes[..bytes.len() - 5].to_vec();
    for bad in [flipped, torn] {
        let mut inst = follower.begin_install(0).unwrap();
        inst.write(&bad).unwrap();
        assert!(matches!(
            follower.verify_install(inst),
            Err(WalError::Corrupt { .. })
        ));
    }
    let next = leader.sealed_segment_at(seg.next_offset).unwrap();
    let mut other = vec![0u8; next.size_bytes as usize];
    next.read_at(0, &mut other).unwrap();
    let mut inst = follower.begin_install(0).unwrap();
    inst.write(&other).unwrap();
    assert!(matches!(
        follower.verify_install(inst),
        Err(WalError::Corrupt { .. })
    ));
    // The log moved on between verify and finish: refused, nothing installed.
    let mut inst = follower.begin_install(0).unwrap();
    inst.write(&bytes).unwrap();
    let verified = follower.verify_install(inst).unwrap();
    let mut b0 = leader.read(0, 1, i64::MAX).unwrap().data.to_vec();
    follower.append_replica(&mut b0).unwrap();
    assert!(matches!(
        follower.finish_install(verified),
        Err(WalError::ReplicaGap { .. })
    ));
    assert_eq!(follower.log_end_offset(), 3);
    assert_eq!(segment_bases(b.path()), vec![0]);
    assert_eq!(incoming_files(b.path()), 0);
}

#[tokio::test]
async fn recovery_removes_an_unfinished_transfer() {
    let b = tempfile::tempdir().unwrap();
    let follower = open(b.path(), small_config()).await;
    let mut inst = follower.begin_install(0).unwrap();
    inst.write(b"partial").unwrap();
    std::mem::forget(inst); // as if the process died mid-transfer
    drop(follower);
    assert_eq!(incoming_files(b.path()), 1);
    let follower = open(b.path(), small_config()).await;
    assert_eq!(incoming_files(b.path()), 0);
    assert_eq!(follower.log_end_offset(), 0);
}
