use super::*;

/// Parses `input`, checks that the items give back the input byte for byte, and renders what was
/// understood, one item per line.
fn check(input: &str) -> String {
    let items = parse(input);
    let joined: String = items.iter().map(|i| i.text.as_str()).collect();
    assert_eq!(joined, input, "parsing must be lossless");
    items
        .iter()
        .map(|i| match &i.kind {
            Kind::Other => format!("{:>2} other  {:?}", i.line, i.text),
            Kind::Assign(a) => match a.insert_at {
                Some(at) => format!(
                    "{:>2} EMPTY  {} (insert at {at}) -> {:?}",
                    i.line,
                    a.key,
                    i.filled("S").unwrap()
                ),
                None => format!("{:>2} set    {} = {:?}", i.line, a.key, a.value),
            },
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn every_form_of_assignment() {
    insta::assert_snapshot!(check(
        "# comment\n\nA=1\nB=\nexport C=\nD=\"\"\nE=''\nF= # note\nG = \nH = my string # inline\nI=#not-a-comment\n\
         J=\"\" # quoted empty\nK: yaml\nL=x\\\"y\nbare line\nVAR.WITH.DOTS=\n  INDENTED=\nM=${OTHER}\n"
    ));
}

#[test]
fn crlf_and_bom_are_kept() {
    insta::assert_snapshot!(check("\u{feff}A=1\r\nB=\r\n# c\r\nC=\"\"\r\n"));
}

#[test]
fn multiline_quoted_values_are_one_item() {
    insta::assert_snapshot!(check("A='first\nsecond'\nB=\nC=\"open\nnever closed\n"));
}

#[test]
fn pairs_follow_dotenv_semantics() {
    assert_eq!(
        pairs("A=1\nB= 2 # c\nC=\"x\\ny\"\nD='a\\'b'\nexport E=e\n"),
        vec![
            ("A".into(), "1".into()),
            ("B".into(), "2".into()),
            ("C".into(), "x\ny".into()),
            ("D".into(), "a'b".into()),
            ("E".into(), "e".into())
        ]
    );
}

#[test]
fn line_end_is_detected() {
    assert_eq!(line_end("A=1\r\n"), "\r\n");
    assert_eq!(line_end("A=1\n"), "\n");
    assert_eq!(line_end(""), "\n");
}
