//! Messages: `Message::decode` (strict canonical CBOR) never panics; an accepted message
//! has a known name and encodes back to exactly the input, and its control frame decodes
//! to the same message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tds_protocol::frame::{self, Frame};
use tds_protocol::message::MESSAGE_NAMES;
use tds_protocol::Message;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Message::decode(data) {
        assert!(
            MESSAGE_NAMES.contains(&m.name()),
            "unknown name {}",
            m.name()
        );
        let again = m.encode().expect("a decoded message encodes");
        assert_eq!(again, data, "{} is not canonical", m.name());
        let f = frame::encode_control(&m).expect("a decoded message fits a frame");
        assert_eq!(f.get(frame::HEADER_LEN..), Some(data));
        match frame::decode(&f) {
            Ok(Frame::Control(back)) => assert_eq!(back, m),
            other => panic!("control frame of {} decodes as {other:?}", m.name()),
        }
    }
});
