use oxifaster::FasterValue;

#[derive(FasterValue)]
enum State {
    On,
    Off,
}

fn main() {}
