// Fault-injecting devices, checkpoint I/O and fuzz entry points are test
// doubles: only under the `testing` feature.
use oxifaster::checkpoint::FaultIo;
use oxifaster::device::FaultDevice;

fn main() {
    oxifaster::fuzzing::record(&[]);
    let _: Option<(FaultIo, FaultDevice)> = None;
}
