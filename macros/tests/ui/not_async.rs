/// Adds one.
#[statewise::tool]
fn add_one(n: i64) -> i64 {
    n + 1
}

fn main() {}
