# Turns the text file IN into a C file OUT defining `const char *const NAME` (its bytes,
# NUL-terminated), so the binary carries it and the file stays where it is written.
file(READ ${IN} hex HEX)
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," hex "${hex}")
string(REGEX REPLACE "(0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,)" "\\1\n" hex "${hex}")
file(WRITE ${OUT} "/* generated from ${IN} by cmake/embed_text.cmake: do not edit */\nstatic const unsigned char bytes[] = {\n${hex}0x00};\nextern const char *const ${NAME};\nconst char *const ${NAME} = (const char *)bytes;\n")
