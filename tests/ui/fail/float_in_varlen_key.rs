use oxifaster::FasterKey;

#[derive(FasterKey, Clone)]
struct Series {
    name: String,
    points: Vec<f64>,
}

fn main() {}
