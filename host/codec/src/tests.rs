//! The codec's rules, each shown both ways.

use super::*;

fn written(f: impl FnOnce(&mut Writer)) -> Vec<u8> {
    let mut w = Writer::new();
    f(&mut w);
    w.into_vec()
}

#[test]
fn every_kind_of_item_round_trips() {
    let b = written(|w| {
        w.array(9);
        w.u8(7);
        w.u32(70_000);
        w.u64(u64::MAX);
        w.i32(-2_000_000);
        w.i32(i32::MIN);
        w.bytes(&[1, 2, 3]);
        w.str("héllo");
        w.null();
        w.tag(18);
        w.u8(0);
    });
    let mut r = Reader::new(&b);
    r.tuple("t", 9).unwrap();
    assert_eq!(r.u8("a").unwrap(), 7);
    assert_eq!(r.u32("b").unwrap(), 70_000);
    assert_eq!(r.u64("c").unwrap(), u64::MAX);
    assert_eq!(r.i32("d").unwrap(), -2_000_000);
    assert_eq!(r.i32("e").unwrap(), i32::MIN);
    assert_eq!(r.arr::<3>("f").unwrap(), [1, 2, 3]);
    assert_eq!(r.str("g", 6).unwrap(), "héllo");
    assert!(r.is_null());
    r.null("h").unwrap();
    assert!(r.is_tag());
    assert_eq!(r.tag("i").unwrap(), 18);
    assert_eq!(r.u8("j").unwrap(), 0);
    r.end().unwrap();
}

#[test]
fn longer_headers_than_needed_are_refused() {
    let longer_form = CodecError::NotCanonical {
        field: "n",
        reason: "an integer or length in a longer form than needed",
    };
    // 23 in one byte is fine; in two it is not. Likewise 255 in three, 65535 in five, and
    // 2^32-1 in nine bytes.
    assert_eq!(Reader::new(&[0x17]).u8("n"), Ok(23));
    assert_eq!(Reader::new(&[0x18, 0x17]).u8("n"), Err(longer_form.clone()));
    assert_eq!(Reader::new(&[0x18, 0x18]).u8("n"), Ok(24));
    assert_eq!(
        Reader::new(&[0x19, 0, 0xff]).u32("n"),
        Err(longer_form.clone())
    );
    assert_eq!(
        Reader::new(&[0x1a, 0, 0, 0xff, 0xff]).u32("n"),
        Err(longer_form.clone())
    );
    assert_eq!(
        Reader::new(&[0x1b, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]).u64("n"),
        Err(longer_form.clone())
    );
    // The same for lengths and counts: a one-byte string with a two-byte header, an array.
    assert_eq!(
        Reader::new(&[0x58, 1, 9]).bytes("n", 8),
        Err(longer_form.clone())
    );
    assert_eq!(
        Reader::new(&[0x98, 1, 0]).array("n", 8, 1),
        Err(longer_form)
    );
    assert_eq!(Reader::new(&[0x41, 9]).bytes("n", 8), Ok(&[9u8][..]));
}

#[test]
fn indefinite_lengths_are_refused() {
    let indefinite = |r: Result<usize, CodecError>| {
        assert_eq!(
            r,
            Err(CodecError::NotCanonical {
                field: "n",
                reason: "an indefinite length"
            })
        )
    };
    // [_ 1, 2] and {_ "a": 1}
    indefinite(Reader::new(&[0x9f, 1, 2, 0xff]).array("n", 8, 1));
    indefinite(Reader::new(&[0xbf, 0x61, b'a', 1, 0xff]).map("n", 8, 1));
    assert!(matches!(
        Reader::new(&[0x5f, 0x41, 1, 0xff]).bytes("n", 8),
        Err(CodecError::NotCanonical { .. })
    ));
    assert!(matches!(
        Reader::new(&[0x7f, 0x61, b'a', 0xff]).str("n", 8),
        Err(CodecError::NotCanonical { .. })
    ));
    // The definite forms are read.
    assert_eq!(Reader::new(&[0x82, 1, 2]).array("n", 8, 1), Ok(2));
}

#[test]
fn map_keys_and_set_members_must_ascend_in_the_canonical_order() {
    let keys = |ks: &[&str]| {
        let b = written(|w| {
            w.map(ks.len());
            for k in ks {
                w.str(k);
                w.u8(0);
            }
        });
        let mut r = Reader::new(&b);
        let n = r.map("m", 8, 2)?;
        let mut order = KeyOrder::new("m");
        let mut out = Vec::new();
        for _ in 0..n {
            out.push(r.ordered_str(&mut order, 16)?.to_owned());
            r.u8("m.value")?;
        }
        r.end()?;
        Ok::<_, CodecError>(out)
    };
    // Shorter keys first, then bytewise (RFC 8949 §4.2.1).
    assert_eq!(keys(&["b", "z", "aa"]).unwrap(), ["b", "z", "aa"]);
    let out_of_order = Err(CodecError::NotCanonical {
        field: "m",
        reason: "keys or members duplicated or out of order",
    });
    assert_eq!(keys(&["aa", "b"]), out_of_order);
    assert_eq!(keys(&["z", "b"]), out_of_order);
    assert_eq!(keys(&["b", "b"]), out_of_order);
    // The writer puts them in that order whatever order it is given.
    let b = written(|w| w.text_map([("aa", 1u8), ("z", 2), ("b", 3)], |w, v| w.u8(v)));
    assert_eq!(b, [0xa3, 0x61, b'b', 3, 0x61, b'z', 2, 0x62, b'a', b'a', 1]);
    let b = written(|w| w.text_set(["aa", "b"]));
    assert_eq!(b, [0x82, 0x61, b'b', 0x62, b'a', b'a']);
    assert_eq!(canonical_order("b", "aa"), std::cmp::Ordering::Less);
}

#[test]
fn trailing_bytes_are_refused() {
    let mut r = Reader::new(&[1, 2]);
    r.u8("a").unwrap();
    assert_eq!(r.end(), Err(CodecError::TrailingBytes { count: 1 }));
}

#[test]
fn counts_and_lengths_are_checked_against_the_bytes_left_before_anything_is_read() {
    // An array claiming 2^32-1 entries in six bytes: refused by its cap, then by the room.
    let huge = [0x9a, 0xff, 0xff, 0xff, 0xff, 0];
    assert_eq!(
        Reader::new(&huge).array("list", 1 << 20, 1),
        Err(CodecError::TooMany {
            field: "list",
            count: u32::MAX as usize,
            max: 1 << 20
        })
    );
    assert_eq!(
        Reader::new(&huge).array("list", usize::MAX, 1),
        Err(CodecError::Truncated { field: "list" })
    );
    // Three entries of at least two bytes do not fit in five bytes; in six they may.
    assert_eq!(
        Reader::new(&[0x83, 0, 0, 0, 0, 0]).array("list", 8, 2),
        Err(CodecError::Truncated { field: "list" })
    );
    assert_eq!(
        Reader::new(&[0x83, 0, 0, 0, 0, 0, 0]).array("list", 8, 2),
        Ok(3)
    );
    // A byte string claiming 4 GiB, and one longer than its cap.
    assert_eq!(
        Reader::new(&[0x5a, 0xff, 0xff, 0xff, 0xff, 0]).bytes("b", usize::MAX),
        Err(CodecError::Truncated { field: "b" })
    );
    assert_eq!(
        Reader::new(&[0x43, 1, 2, 3]).bytes("b", 2),
        Err(CodecError::FieldTooLong {
            field: "b",
            len: 3,
            max: 2
        })
    );
    assert_eq!(
        Reader::new(&[0x43, 1, 2, 3]).arr::<4>("b"),
        Err(CodecError::Unexpected {
            field: "b",
            expected: "a byte string of its fixed size"
        })
    );
}

#[test]
fn the_expected_item_only() {
    assert!(matches!(
        Reader::new(&[0x61, b'a']).u8("n"),
        Err(CodecError::Unexpected { field: "n", .. })
    ));
    assert_eq!(
        Reader::new(&[0x19, 1, 0]).u8("n"),
        Err(CodecError::OutOfRange { field: "n" })
    );
    assert_eq!(
        Reader::new(&[0x1a, 0x80, 0, 0, 0]).i32("n"),
        Err(CodecError::OutOfRange { field: "n" })
    );
    assert_eq!(
        Reader::new(&[0x82, 1, 2]).tuple("t", 3),
        Err(CodecError::WrongCount {
            field: "t",
            expected: 3,
            got: 2
        })
    );
    // Text that is not UTF-8; a reserved header; a float where null goes.
    assert!(matches!(
        Reader::new(&[0x61, 0xff]).str("s", 8),
        Err(CodecError::Unexpected { .. })
    ));
    assert!(matches!(
        Reader::new(&[0x1c]).u8("n"),
        Err(CodecError::Unexpected { .. })
    ));
    assert!(Reader::new(&[0xf9, 0, 0]).null("n").is_err());
    assert_eq!(
        Reader::new(&[]).u8("n"),
        Err(CodecError::Truncated { field: "n" })
    );
    assert_eq!(
        Reader::new(&[0x19, 1]).u32("n"),
        Err(CodecError::Truncated { field: "n" })
    );
}

#[test]
fn arbitrary_input_gives_errors_never_panics() {
    let mut s: u64 = 0x2545_F491_4F6C_DD1D;
    for _ in 0..20_000 {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        let b: Vec<u8> = (0..(s % 24) as usize)
            .map(|i| (s >> (i % 57)) as u8)
            .collect();
        let mut r = Reader::new(&b);
        let _ = r.map("m", 4, 1).and_then(|n| {
            let mut order = KeyOrder::new("m");
            for _ in 0..n {
                r.ordered_str(&mut order, 8)?;
                r.i32("v")?;
            }
            r.end()
        });
        let mut r = Reader::new(&b);
        let _ = r
            .array("a", 4, 1)
            .and_then(|_| r.bytes("b", 8))
            .map(|_| r.end());
    }
}

#[test]
fn the_buffer_keeps_every_byte_across_its_wiping_growths() {
    // From 1 byte of room to ~60 KB: each growth copies into a fresh buffer and wipes the
    // old one, so a lost or stale byte would show up here.
    let mut w = Writer::with_capacity(1);
    w.array(10_000);
    for i in 0..10_000u32 {
        w.bytes(&i.to_be_bytes());
    }
    let b = w.finish();
    let mut r = Reader::new(&b);
    assert_eq!(r.array("a", 10_000, 5).unwrap(), 10_000);
    for i in 0..10_000u32 {
        assert_eq!(r.arr::<4>("a.item").unwrap(), i.to_be_bytes());
    }
    r.end().unwrap();
}
