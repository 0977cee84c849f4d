//! Integration tests of `davit-compose`: the differential test against the Compose v2 binary over
//! the shared corpus, plus property tests.

#[path = "compose/differential.rs"]
mod differential;
#[path = "compose/props.rs"]
mod props;
