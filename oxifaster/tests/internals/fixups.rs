// The checksum fix-up helpers (which forge a valid trailer) are not public.
fn main() {
    oxifaster::checkpoint::meta_fix_checksum(&mut []);
    let _ = oxifaster::index::fix_checkpoint_trailer(&[]);
}
