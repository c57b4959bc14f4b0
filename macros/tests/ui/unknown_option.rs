/// Adds one.
#[statewise::tool(title = "Add one")]
async fn add_one(n: i64) -> i64 {
    n + 1
}

fn main() {}
