//! The splitter against its expectations and a byte-at-a-time reference.

use super::*;

fn pieces(input: &[u8], step: usize) -> Vec<(char, String)> {
    // Fed in steps of `step` bytes, carrying over what is kept, as a reader does.
    let mut s = Splitter::new();
    let (mut buf, mut got, mut offset, mut fed) = (Vec::new(), Vec::new(), 0, 0);
    let mut chunks: Vec<&[u8]> = input.chunks(step).collect();
    if chunks.is_empty() {
        chunks.push(b"");
    }
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        fed += chunk.len();
        s.split(&buf, fed == input.len(), &mut |p| got.push((p, offset)));
        let keep = s.keep();
        buf.drain(..keep);
        s.shift(keep);
        offset += keep;
    }
    got.into_iter()
        .map(|(p, off)| match p {
            Piece::Record(r) => (
                'r',
                String::from_utf8_lossy(&input[r.start + off..r.end + off]).into(),
            ),
            Piece::Document(r) => (
                'd',
                String::from_utf8_lossy(&input[r.start + off..r.end + off]).into(),
            ),
            Piece::Tail(r) => (
                't',
                String::from_utf8_lossy(&input[r.start + off..r.end + off]).into(),
            ),
            Piece::Error { at, what, .. } => ('e', format!("{} {what}", at + off)),
        })
        .collect()
}

fn all_steps(input: &str, expected: &[(char, &str)]) {
    for step in [1, 7, 63, 64, 65, 200, 100_000] {
        let got = pieces(input.as_bytes(), step);
        let want: Vec<(char, String)> = expected.iter().map(|(c, s)| (*c, s.to_string())).collect();
        assert_eq!(got, want, "step {step}: {input}");
    }
}

#[test]
fn records_of_a_log_file_and_of_an_array() {
    let rec = r#"{"a":"x\"}]{[,","b":[1,{"c":"\\"}],"d":"\\\"]"}"#;
    let doc = format!("{{\"Records\":[{rec},{rec} , \n{rec}]}}");
    all_steps(
        &doc,
        &[('r', rec), ('r', &format!("{rec} ")), ('r', &format!(" \n{rec}"))],
    );
    let doc = format!("  {{ \"Records\" : [ {rec} ] , \"x\": [1] }}\n[{rec}]\n{{\"Records\":[]}}");
    all_steps(
        &doc,
        &[('r', &format!(" {rec} ")), ('t', r#" , "x": [1] }"#), ('r', rec)],
    );
}

#[test]
fn other_documents_are_taken_whole() {
    let rec = r#"{"eventName":"x","r":[{"a":1}]}"#;
    all_steps(
        &format!("{rec}\n{{\"Events\":[{{\"CloudTrailEvent\":\"{{}}\"}}]}} {{}}"),
        &[
            ('d', rec),
            ('d', r#"{"Events":[{"CloudTrailEvent":"{}"}]}"#),
            ('d', "{}"),
        ],
    );
    all_steps(
        r#"{"digestStartTime":"t","logFiles":[]}"#,
        &[('d', r#"{"digestStartTime":"t","logFiles":[]}"#)],
    );
}

#[test]
fn broken_input_stops_with_what_and_where() {
    all_steps(
        r#"{"Records":[{"a":1},{"a""#,
        &[
            ('r', r#"{"a":1}"#),
            ('r', r#"{"a""#),
            ('e', "24 EOF while parsing a list"),
        ],
    );
    all_steps(
        r#"{"Records":[{"a":1},"#,
        &[('r', r#"{"a":1}"#), ('e', "20 EOF while parsing a value")],
    );
    all_steps(
        r#"{"Records":[{"a":1},]}"#,
        &[('r', r#"{"a":1}"#), ('e', "20 trailing comma")],
    );
    all_steps(r#"{"Records":[,{"a":1}]}"#, &[('e', "12 expected value")]);
    all_steps(r#"{"Records":[{"a":1}], "#, &[('r', r#"{"a":1}"#), ('t', ", ")]);
    all_steps(r#"{"eventName":"#, &[('d', r#"{"eventName":"#)]);
    all_steps("[] x", &[('e', "3 expected `{` or `[`")]);
    // Junk between documents is placed at its first byte, whatever ends it.
    all_steps(r#"[] "a]", 1"#, &[('e', "3 expected `{` or `[`")]);
    all_steps("[]\n 5 ]", &[('e', "4 expected `{` or `[`")]);
    all_steps("[]]", &[('e', "2 expected `{` or `[`")]);
    all_steps("", &[]);
}

/// A `}` does not close a list (the stream reads it as an element, or as junk after one), and
/// a `]` does not close the object after one: serde_json reads it in the tail.
#[test]
fn a_list_closed_by_the_wrong_bracket() {
    all_steps(
        r#"{"Records":[{"a":1}}"#,
        &[('r', r#"{"a":1}"#), ('e', "19 expected `,` or `]`")],
    );
    all_steps(
        r#"[{"a":1} }"#,
        &[('r', r#"{"a":1} "#), ('e', "9 expected `,` or `]`")],
    );
    all_steps(r#"{"Records":[ }"#, &[('e', "13 expected value")]);
    all_steps(
        r#"{"Records":[{"a":1},}"#,
        &[('r', r#"{"a":1}"#), ('e', "20 expected value")],
    );
    all_steps(r#"{"Records":[{"a":1}]]"#, &[('r', r#"{"a":1}"#), ('t', "]")]);
    // Junk after a record is the record's, for its reader to find.
    all_steps(
        r#"{"Records":[{"a":1} 5,{"a":2}]}"#,
        &[('r', r#"{"a":1} 5"#), ('r', r#"{"a":2}"#)],
    );
}

#[test]
fn escapes_match_a_byte_at_a_time_reference() {
    // Random strings of quotes, backslashes and brackets: the masks' string interiors must
    // equal a plain state machine's, across block boundaries.
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..300 {
        let mut input = Vec::new();
        for _ in 0..(x % 300) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            input.push(b"\"\\\\a[,]"[(x % 7) as usize]);
        }
        let expected: Vec<usize> = {
            // A backslash escapes the next byte, inside strings or not (outside them it is
            // not JSON, and only quotes are told apart by it).
            let (mut inside, mut esc, mut v) = (false, false, Vec::new());
            for (i, &b) in input.iter().enumerate() {
                let escaped = esc;
                esc = b == b'\\' && !escaped;
                if b == b'"' && !escaped {
                    inside = !inside;
                } else if !inside && matches!(b, b'[' | b']' | b',') {
                    v.push(i);
                }
            }
            v
        };
        let mut s = Splitter::new();
        let mut got = Vec::new();
        let mut padded = input.clone();
        padded.resize(input.len().div_ceil(64) * 64, b' ');
        for (k, block) in padded.chunks(64).enumerate() {
            let (b, c) = s.structural(classify(block.try_into().unwrap()));
            let mut m = b | c;
            while m != 0 {
                got.push(k * 64 + m.trailing_zeros() as usize);
                m &= m - 1;
            }
        }
        assert_eq!(got, expected, "{}", String::from_utf8_lossy(&input));
    }
}
