package credentialsexchange

// MultipartBody lets the end-to-end tests (package credentialsexchange_test)
// build the same multipart bodies as the unit tests.
var MultipartBody = multipartBody
