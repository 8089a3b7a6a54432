use oxifaster::FasterValue;

#[derive(FasterValue, Clone)]
struct Named {
    #[faster(merge = "sum")]
    name: String,
}

fn main() {}
