//! Frames: `frame::decode` and `FrameHeader::parse` never panic, a header that parses is
//! within its type's maximum and prints back to the same five bytes, and a frame that
//! decodes re-encodes (`encode_control` / `encode_data`) to exactly the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tds_protocol::frame::{self, Frame, FrameHeader, FrameType, HEADER_LEN};
use tds_protocol::message::MESSAGE_NAMES;

fuzz_target!(|data: &[u8]| {
    let header = data
        .first_chunk::<HEADER_LEN>()
        .and_then(|h| FrameHeader::parse(h).ok().map(|p| (h, p)));
    if let Some((bytes, h)) = header {
        assert_eq!(
            &h.to_bytes(),
            bytes,
            "a parsed header prints back unchanged"
        );
        assert!(h.len <= h.kind.max_len());
    }
    match frame::decode(data) {
        Ok(Frame::Control(m)) => {
            let (_, h) = header.expect("a decoded frame has a valid header");
            assert_eq!(h.kind, FrameType::Control);
            assert!(MESSAGE_NAMES.contains(&m.name()));
            let again = frame::encode_control(&m).expect("a decoded message encodes");
            assert_eq!(again, data, "control frame is not canonical");
        }
        Ok(Frame::Data(h, chunk)) => {
            let (_, fh) = header.expect("a decoded frame has a valid header");
            assert_eq!(fh.kind, FrameType::Data);
            let again = frame::encode_data(&h, chunk).expect("a decoded data frame encodes");
            assert_eq!(again, data, "data frame is not canonical");
            let head = frame::encode_data_head(&h, chunk.len()).expect("its head encodes");
            assert_eq!(data.get(..head.len()), Some(&head[..]));
        }
        Err(_) => {}
    }
});
