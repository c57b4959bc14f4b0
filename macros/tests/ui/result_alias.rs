type Result<T> = std::result::Result<T, std::io::Error>;

/// Reads a file.
#[statewise::tool]
async fn read(path: String) -> Result<String> {
    std::fs::read_to_string(path)
}

fn main() {}
