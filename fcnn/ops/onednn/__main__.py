"""`python -m fcnn.ops.onednn`: build (or reuse) the oneDNN convolution library and
print where oneDNN was found, the compile command and the library's version."""

from fcnn.ops.onednn.build import main

main()
