// The hybrid log (raw record pointers, epoch handles) is internal.
use oxifaster::hlog::HybridLog;

fn main() {
    let _: Option<HybridLog<oxifaster::device::NullDevice>> = None;
}
