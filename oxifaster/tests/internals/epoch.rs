// The epoch table is internal.
use oxifaster::epoch::Epoch;

fn main() {
    let _ = Epoch::new(4);
}
