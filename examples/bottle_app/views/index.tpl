% rebase('base', title=app_name)
<h1>{{app_name}}</h1>
% if user:
  <p id="welcome">Welcome, {{user.email}}.</p>
% else:
  <p>Log in, sign up, or try <a href="/forgot">Forgot password?</a></p>
% end
