// Config reloads allocate heavily (tens of thousands of small objects); mimalloc is markedly
// faster than glibc's allocator there and hands freed memory back instead of holding it.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    std::process::exit(portcullis::app::main());
}
