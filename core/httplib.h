// The one way tidal includes cpp-httplib. Debian 12's libcpp-httplib is compiled with OpenSSL,
// zlib and Brotli support, and those macros change the layout of httplib::Client, ClientImpl and
// friends: a translation unit that includes <httplib.h> without them builds objects smaller than
// the library's code assumes (seen as "free(): invalid pointer"). cmake/Dependencies.cmake checks
// these defines against cpp-httplib.pc at configure time. Never include <httplib.h> directly.
#pragma once

#ifndef CPPHTTPLIB_USE_POLL
#define CPPHTTPLIB_USE_POLL
#endif
#define CPPHTTPLIB_OPENSSL_SUPPORT
#define CPPHTTPLIB_ZLIB_SUPPORT
#define CPPHTTPLIB_BROTLI_SUPPORT

#include <httplib.h>
