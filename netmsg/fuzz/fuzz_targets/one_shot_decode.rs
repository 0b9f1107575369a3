#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| netmsg::wire::fuzz_decode_one_shot(data));
