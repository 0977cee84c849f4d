use std::collections::HashSet;

use super::*;

/// Deterministic "secrets" for pure rendering tests: S1, S2, ...
fn counter() -> impl FnMut() -> Result<String, Error> {
    let mut n = 0;
    move || {
        n += 1;
        Ok(format!("S{n}"))
    }
}

fn check(template: &str, existing: Option<&str>) -> String {
    let r = render(template, existing, counter()).unwrap();
    format!(
        "generated: {:?}\nkept: {:?}\nappended: {:?}\n---\n{}",
        r.generated, r.kept, r.appended, r.text
    )
}

#[test]
fn fills_only_empty_values_and_keeps_everything_else() {
    insta::assert_snapshot!(check(
        "# Database\nDB_HOST=db\nDB_PASSWORD=\n\n# Tokens\nexport JWT_SECRET=\nAPI_KEY=\"\"\nSALT= # rotate yearly\nPLAIN=value # c\n",
        None
    ));
}

#[test]
fn a_key_twice_gets_one_secret() {
    insta::assert_snapshot!(check("A=\nB=1\nA=\n", None));
}

#[test]
fn existing_values_win_and_missing_keys_are_appended() {
    insta::assert_snapshot!(check(
        "# db\nDB_HOST=db\nDB_PASSWORD=\n# new in v2\n# (rotate)\nNEW_TOKEN=\nNEW_SETTING=on\n",
        Some("# db\nDB_HOST=db.internal\nDB_PASSWORD=kept-value\n")
    ));
}

#[test]
fn empty_keys_of_an_existing_file_are_filled_when_the_template_wants_them() {
    insta::assert_snapshot!(check("A=\nB=x\n", Some("A=\nB=\nEXTRA=\n")));
}

#[test]
fn rendering_its_own_output_changes_nothing() {
    let template = "A=\nexport B=\"\"\r\nC=1\n# c\nD= # x\n";
    let first = render(template, None, counter()).unwrap();
    let second = render(template, Some(&first.text), || {
        panic!("no secret should be generated")
    })
    .unwrap();
    assert_eq!(second.text, first.text);
    assert!(second.generated.is_empty());
    assert_eq!(second.kept, vec!["A", "B", "D"]);
}

#[test]
fn appended_lines_use_the_files_line_end() {
    let r = render("A=\nB=\n", Some("A=x\r\n"), counter()).unwrap();
    assert_eq!(r.text, "A=x\r\nB=S1\r\n");
    let r = render("A=\nB=\n", Some("A=x"), counter()).unwrap();
    assert_eq!(r.text, "A=x\nB=S1\n");
}

#[test]
fn secrets_are_256_bit_hex_and_unique() {
    let mut seen = HashSet::new();
    for _ in 0..1000 {
        let s = generate_secret().unwrap();
        assert_eq!(s.len(), 64);
        assert!(
            s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
            "{s}"
        );
        assert!(seen.insert(s), "a duplicate secret");
    }
    // Every hex digit shows up across 64 000 characters of output; a broken generator (all zeros,
    // a stuck nibble) would not.
    let digits: HashSet<char> = seen.iter().flat_map(|s| s.chars()).collect();
    assert_eq!(digits.len(), 16);
}

#[test]
fn hex_encoding() {
    assert_eq!(to_hex(&[0x00, 0x0f, 0xa5, 0xff]), "000fa5ff");
}
