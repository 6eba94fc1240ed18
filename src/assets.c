/* assets.c - files served by the HTTP service, built into the binary: the web
 * page (web/index.html) and the OpenAPI document (docs/openapi.json). Each is
 * followed by a NUL byte; its length is end - start - 1. Paths are relative
 * to the top of the tree, where make runs the compiler. */
#include "server_int.h"

__asm__(".section .rodata\n"
        ".balign 16\n"
        ".global jm_asset_index_html\n"
        ".type jm_asset_index_html, @object\n"
        "jm_asset_index_html:\n"
        ".incbin \"web/index.html\"\n"
        ".byte 0\n"
        ".global jm_asset_index_html_end\n"
        "jm_asset_index_html_end:\n"
        ".balign 16\n"
        ".global jm_asset_openapi_json\n"
        ".type jm_asset_openapi_json, @object\n"
        "jm_asset_openapi_json:\n"
        ".incbin \"docs/openapi.json\"\n"
        ".byte 0\n"
        ".global jm_asset_openapi_json_end\n"
        "jm_asset_openapi_json_end:\n"
        ".previous\n");
