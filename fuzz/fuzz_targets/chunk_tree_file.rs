//! Chunk tree files (spec/manifest.md §3.4): opening never panics or allocates by a
//! claimed size, and what opens and checks is exactly the tree its leaves make.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tds_core::merkle;
use tds_manifest::content::{ChunkSize, ChunkTreeFile, ChunkTreeWriter, TreeHeader};

fuzz_target!(|data: &[u8]| {
    let Ok(file) = ChunkTreeFile::open(data) else {
        return;
    };
    let h = *file.header();
    assert_eq!(
        data.len() as u64,
        h.file_len(),
        "opened a file of the wrong length"
    );
    let mut head = [0u8; 64];
    head.copy_from_slice(data.get(..64).expect("an opened file has a header"));
    assert_eq!(
        TreeHeader::parse(&head).expect("header parses").to_bytes(),
        head
    );
    if file.check().is_err() {
        return;
    }
    // A checked file is exactly the tree of its leaves: writing them again gives the
    // input byte for byte, and every proof it serves leads to its root.
    let leaves: Vec<_> = file
        .leaves()
        .collect::<Result<_, _>>()
        .expect("the leaves of a checked file read");
    let cs = ChunkSize::for_tests(h.chunk_size).expect("the parser took the chunk size");
    let mut w = ChunkTreeWriter::new(Vec::new(), cs, h.size).expect("writer");
    for l in &leaves {
        w.push(l).expect("push");
    }
    let (bytes, header) = w.finish().expect("finish");
    assert_eq!(header, h);
    assert_eq!(bytes, data, "a checked tree file does not round-trip");
    for (i, l) in leaves.iter().enumerate() {
        let proof = file
            .proof(i as u64)
            .expect("proof of a leaf below the count");
        merkle::verify_inclusion(l, i as u64, h.chunks, &proof.path, &h.root)
            .expect("a proof from a checked file verifies");
    }
});
