// Lua unloads C libraries when its state closes (Prosody's exit). A worker thread still finishing
// a request at that moment would then run code that is no longer mapped, so the library is
// marked never to be unloaded.
fn main() {
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,nodelete");
}
